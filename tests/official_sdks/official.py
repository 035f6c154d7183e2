"""Signs and checks webhook deliveries with the providers' own SDKs, for the tests in
tests/tests/integration/official_sdks.rs.

    python official.py sign PROVIDER     stdin: {"secret", "body", "url", "timestamp", "id"}
                                         stdout: {"headers": {...}, "url": "..."}
    python official.py verify PROVIDER   stdin: {"secret", "headers", "body", "url"}
                                         stdout: {"valid": true|false}
    python official.py providers         stdout: {"sign": [...], "verify": [...]}

Every signature here is made, and every check done, by the SDK a provider publishes on PyPI
(pinned in scripts/requirements-dev.txt); nothing is computed by hand, so hookgate agreeing
with these is hookgate agreeing with the provider. Header names in the output are
lowercase, as API Gateway hands them on.
"""

import contextlib
import json
import sys
import urllib.parse
from datetime import datetime, timezone


def sign_slack(d):
    from slack_sdk.signature import SignatureVerifier

    signature = SignatureVerifier(d["secret"]).generate_signature(
        timestamp=str(d["timestamp"]), body=d["body"]
    )
    return {"x-slack-signature": signature, "x-slack-request-timestamp": str(d["timestamp"])}


def verify_slack(d):
    from slack_sdk.signature import SignatureVerifier

    return SignatureVerifier(d["secret"]).is_valid_request(d["body"], d["headers"])


def sign_standard(d):
    from standardwebhooks.webhooks import Webhook

    at = datetime.fromtimestamp(d["timestamp"], tz=timezone.utc)
    signature = Webhook(d["secret"]).sign(d["id"], at, d["body"])
    return {
        "webhook-id": d["id"],
        "webhook-timestamp": str(d["timestamp"]),
        "webhook-signature": signature,
    }


def verify_standard(d):
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    try:
        Webhook(d["secret"]).verify(d["body"], d["headers"])
        return True
    except WebhookVerificationError:
        return False


def verify_stripe(d):
    import stripe

    try:
        stripe.WebhookSignature.verify_header(
            d["body"], d["headers"]["stripe-signature"], d["secret"], tolerance=300
        )
        return True
    except stripe.SignatureVerificationError:
        return False


def verify_square(d):
    from square.utils.webhooks_helper import verify_signature

    return verify_signature(
        request_body=d["body"],
        signature_header=d["headers"].get("x-square-hmacsha256-signature", ""),
        signature_key=d["secret"],
        notification_url=d["url"],
    )


def _paddle_secret(d):
    from paddle_billing.Notifications.Secret import Secret

    return Secret(d["secret"])


def sign_paddle(d):
    from paddle_billing.Notifications.PaddleSignature import PaddleSignature

    signed = f"{d['timestamp']}:{d['body']}".encode()
    h1 = PaddleSignature.calculate_hmac(d["secret"], signed).hexdigest()
    return {"paddle-signature": f"ts={d['timestamp']};h1={h1}"}


def verify_paddle(d):
    from paddle_billing.Notifications.Verifier import Verifier

    class Request:
        headers = {"Paddle-Signature": d["headers"].get("paddle-signature")}
        body = d["body"].encode()

    try:
        return bool(Verifier(maximum_variance=300).verify(Request(), _paddle_secret(d)))
    except ConnectionRefusedError:
        return False


def sign_hubspot(d):
    from hubspot.utils.signature import Signature

    millis = str(d["timestamp"] * 1000)
    signature = Signature.get_signature(
        client_secret=d["secret"],
        request_body=d["body"],
        http_uri=d["url"],
        http_method="POST",
        signature_version="v3",
        timestamp=millis,
    )
    return {"x-hubspot-signature-v3": signature, "x-hubspot-request-timestamp": millis}


def verify_hubspot(d):
    from hubspot.utils.signature import Signature

    try:
        return Signature.is_valid(
            signature=d["headers"].get("x-hubspot-signature-v3", ""),
            client_secret=d["secret"],
            request_body=d["body"],
            http_uri=d["url"],
            http_method="POST",
            signature_version="v3",
            timestamp=d["headers"].get("x-hubspot-request-timestamp"),
        )
    except Exception:  # the SDK raises on a stale or missing timestamp
        return False


def _twilio_params(d):
    # A form is signed by its parameters; a JSON body by its hash in the URL.
    if d["body"].lstrip().startswith(("{", "[")):
        return {}
    return {
        key: values if len(values) > 1 else values[0]
        for key, values in urllib.parse.parse_qs(d["body"], keep_blank_values=True).items()
    }


def sign_twilio(d):
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(d["secret"])
    url = d["url"]
    params = _twilio_params(d)
    if not params:
        separator = "&" if "?" in url else "?"
        url = f"{url}{separator}bodySHA256={validator.compute_hash(d['body'])}"
    return {"x-twilio-signature": validator.compute_signature(url, params)}, url


def verify_twilio(d):
    from twilio.request_validator import RequestValidator

    params = _twilio_params(d) or d["body"]
    return RequestValidator(d["secret"]).validate(
        d["url"], params, d["headers"].get("x-twilio-signature", "")
    )


def verify_sendgrid(d):
    from sendgrid.helpers.eventwebhook import EventWebhook

    webhook = EventWebhook()
    return webhook.verify_signature(
        d["body"],
        d["headers"].get("x-twilio-email-event-webhook-signature", ""),
        d["headers"].get("x-twilio-email-event-webhook-timestamp", ""),
        webhook.convert_public_key_to_ecdsa(d["secret"]),
    )


def verify_discord(d):
    from discord_interactions import verify_key

    return verify_key(
        d["body"].encode(),
        d["headers"].get("x-signature-ed25519", ""),
        d["headers"].get("x-signature-timestamp", ""),
        d["secret"],
    )


SIGNERS = {
    "slack": sign_slack,
    "standard": sign_standard,
    "paddle": sign_paddle,
    "hubspot": sign_hubspot,
    "twilio": sign_twilio,
}

VERIFIERS = {
    "slack": verify_slack,
    "standard": verify_standard,
    "stripe": verify_stripe,
    "square": verify_square,
    "paddle": verify_paddle,
    "hubspot": verify_hubspot,
    "twilio": verify_twilio,
    "sendgrid": verify_sendgrid,
    "discord": verify_discord,
}


def main():
    command = sys.argv[1]
    if command == "providers":
        print(json.dumps({"sign": sorted(SIGNERS), "verify": sorted(VERIFIERS)}))
        return
    provider = sys.argv[2]
    delivery = json.load(sys.stdin)
    # Some SDKs print what they caught (discord-interactions prints a failed check): stdout
    # carries the answer alone.
    with contextlib.redirect_stdout(sys.stderr):
        if command == "sign":
            signed = SIGNERS[provider](delivery)
            headers, url = signed if isinstance(signed, tuple) else (signed, delivery["url"])
            answer = {"headers": headers, "url": url}
        elif command == "verify":
            answer = {"valid": bool(VERIFIERS[provider](delivery))}
        else:
            sys.exit(f"unknown command {command}")
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
