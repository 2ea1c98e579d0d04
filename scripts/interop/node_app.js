// Express 4 app run under the real Sqreen Node.js agent (sqreen@2.0.2) by
// scripts/interop.sh. The agent is configured only by the environment
// (SQREEN_URL, SQREEN_INGESTION_URL, SQREEN_LEGACY_URL, SQREEN_TOKEN,
// SQREEN_APP_NAME, SQREEN_RULES_SIGNATURE=false). Port: argv[2]. SIGINT
// makes the agent log out, then exit.
'use strict';
const sqreen = require('sqreen');
const express = require('express');

const app = express();
app.set('trust proxy', true);

app.get('/', (req, res) => res.send('ok'));

app.get('/track', (req, res) => {
    sqreen.track('interop.viewed', {
        properties: { plan: 'gold', seats: 3 },
        user_identifiers: { uid: req.query.uid || 'alice' }
    });
    res.send('tracked');
});

app.get('/login', (req, res) => {
    const ok = req.query.ok === '1';
    sqreen.auth_track(ok, { username: req.query.user || 'bob' });
    if (!ok) {
        // Node.js 2.0.2 counts auth_track only under a signed rule (see the
        // README's compatibility table): the failure is also tracked.
        sqreen.track('interop.login_failed', { user_identifiers: { username: req.query.user || 'bob' } });
    }
    res.status(ok ? 200 : 401).send(ok ? 'welcome' : 'denied');
});

app.get('/signup', (req, res) => {
    sqreen.signup_track({ username: req.query.user || 'carol' });
    res.send('signed up');
});

app.get('/me', (req, res) => {
    sqreen.identify(req, { username: req.query.user || 'dave' });
    // The Node.js SDK enforces user actions when asked (it has answered).
    if (sqreen.userIsBanned(req)) {
        return;
    }
    res.send('hello');
});

app.listen(Number(process.argv[2]), '127.0.0.1');
