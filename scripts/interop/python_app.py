"""Flask 1.1 app run under the real Sqreen Python agent (sqreen==1.27.4)
by scripts/interop.sh. The agent is configured only by the environment
(SQREEN_URL, SQREEN_INGESTION_URL, SQREEN_LEGACY_URL, SQREEN_TOKEN,
SQREEN_APP_NAME, SQREEN_RULES_SIGNATURE=false). Port: argv[1].
"""
import sys

import sqreen

sqreen.start()

from flask import Flask, request  # noqa: E402  (the agent must start first)

app = Flask(__name__)


@app.route("/")
def index():
    return "ok"


@app.route("/track")
def track():
    sqreen.track(
        "interop.viewed",
        options={
            "properties": {"plan": "gold", "seats": 3},
            "user_identifiers": {"uid": request.args.get("uid", "alice")},
        },
    )
    return "tracked"


@app.route("/login")
def login():
    user = request.args.get("user", "bob")
    ok = request.args.get("ok") == "1"
    sqreen.auth_track(ok, username=user)
    return ("welcome" if ok else "denied"), (200 if ok else 401)


@app.route("/signup")
def signup():
    sqreen.signup_track(username=request.args.get("user", "carol"))
    return "signed up"


@app.route("/me")
def me():
    sqreen.identify({"username": request.args.get("user", "dave")})
    return "hello"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
