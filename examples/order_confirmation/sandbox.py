"""A local stand-in for Stripe, Salesforce, SendGrid and Twilio, answering as their documented
APIs do (the same recording server the tests use). For demos and tests only."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.recorder import Recorder  # noqa: E402

ACCOUNT = "AC0123456789abcdef0123456789abcdef"
ORG = "00D5e000000AbCdEAK"
CUSTOMER = {"id": "cus_QxY12ab34CD", "object": "customer", "email": "ada@example.com",
            "name": "Ada Lovelace", "phone": "+15551234567", "livemode": False,
            "invoice_settings": {"default_payment_method": None}, "metadata": {}}
SF = "/services/data/v59.0"


def _login(_req):
    body = (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns="urn:partner.soap.sforce.com"><soapenv:Body><loginResponse><result>'
            f"<serverUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/{ORG}</serverUrl>"
            f"<sessionId>{ORG}!AQ4AQdemoSession</sessionId><userId>0055e000001AbCdAAB</userId>"
            f"<userInfo><organizationId>{ORG}</organizationId></userInfo></result></loginResponse>"
            f"</soapenv:Body></soapenv:Envelope>")
    return 200, {"Content-Type": "text/xml; charset=utf-8"}, body.encode()


def _message(req):
    form = req.form()
    return 201, {"Content-Type": "application/json"}, json.dumps({
        "account_sid": ACCOUNT, "sid": "SM" + "a" * 32, "status": "queued", "to": form["To"][0],
        "from": form["From"][0], "body": form["Body"][0], "price": None, "price_unit": "USD",
        "error_code": None, "error_message": None, "num_segments": "1", "direction": "outbound-api",
        "api_version": "2010-04-01", "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/SM{'a' * 32}.json"}).encode()


def start(port: int = 0, *, fail_email: bool = False) -> Recorder:
    api = Recorder()
    api.route("GET", rf"/v1/customers/{CUSTOMER['id']}", json=CUSTOMER)
    api.route("POST", "/services/Soap/u/59.0", handler=_login)
    api.route("GET", f"{SF}/query/", json={"totalSize": 0, "done": True, "records": []})
    api.route("PATCH", rf"{SF}/sobjects/Contact/Stripe_Customer_Id__c/{CUSTOMER['id']}", status=201,
              json={"id": "0035e00000AbCdEAAV", "success": True, "errors": [], "created": True})
    if fail_email:
        api.route("POST", "/v3/mail/send", status=400, json={"errors": [
            {"message": "The from email does not contain a valid address.", "field": "from.email", "help": None}]})
    else:
        api.route("POST", "/v3/mail/send", status=202, headers={"X-Message-Id": "14c5d75ce93.dfd.64b469"})
    api.route("POST", rf"/2010-04-01/Accounts/{ACCOUNT}/Messages\.json", handler=_message)
    return api.start(port)
