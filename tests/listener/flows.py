"""The flows the shared test server serves (one file each)."""

ECHO = """\
name: echo
description: Replies with what the trigger saw.
triggers:
  hook:
    type: Request
    auth: {type: none}
actions:
  reply:
    type: Response
    inputs:
      statusCode: 200
      headers: {X-Echo: "yes"}
      body: "{{ triggerOutputs() }}"
"""

ECHO_PATH = """\
name: echo_path
triggers:
  item:
    type: Request
    auth: {type: none}
    inputs:
      method: PUT
      relativePath: "items/{itemId}/notes/{noteId}"
actions:
  reply:
    type: Response
    inputs:
      body: "{{ triggerOutputs().relativePathParameters }}"
"""

ORDERS = """\
name: orders
triggers:
  new:
    type: Request
    description: A new order.
    auth: {type: key, connection: inbound, header: X-API-Key}
    dedupe: "{{ triggerOutputs().headers.get('idempotency-key') }}"
    inputs:
      schema:
        type: object
        required: [orderId, qty]
        additionalProperties: false
        properties:
          orderId: {type: string, pattern: "^O-[0-9]+$"}
          qty: {type: integer, minimum: 1}
          note: {type: string}
actions:
  take:
    type: Compose
    inputs: {order: "{{ triggerBody().orderId }}", qty: "{{ triggerBody().qty }}"}
  settle:
    type: Wait
    runAfter: {take: [Succeeded]}
    inputs: {interval: {count: 0.6, unit: Second}}
outputs:
  order: {value: "{{ outputs('take') }}"}
"""

KEYED_QUERY = """\
name: keyed_query
triggers:
  hook:
    type: Request
    auth: {type: key, connection: inbound, query: code}
actions:
  reply:
    type: Response
    inputs: {body: "{{ triggerOutputs().queries }}"}
"""

SLOW_REPLY = """\
name: slow_reply
triggers:
  hook:
    type: Request
    auth: {type: none}
actions:
  think:
    type: Wait
    inputs: {interval: {count: 1.5, unit: Second}}
  reply:
    type: Response
    runAfter: {think: [Succeeded]}
    inputs: {statusCode: 201, body: {done: true}}
"""

NO_REPLY = """\
name: no_reply
triggers:
  hook:
    type: Request
    auth: {type: none}
actions:
  stop:
    type: Terminate
    inputs: {runStatus: Failed, runError: {code: Nope, message: failed before replying}}
  reply:
    type: Response
    runAfter: {stop: [Succeeded]}
    inputs: {body: never}
"""

GITHUB = """\
name: github
triggers:
  push:
    type: Request
    auth: {type: hmac, connection: github}
    dedupe: "{{ triggerOutputs().headers['x-github-delivery'] }}"
  signed:
    type: Request
    auth: {type: hmac, connection: github, header: X-Signature, prefix: "v1=", timestampHeader: X-Timestamp,
           tolerance: 60}
actions:
  seen:
    type: Compose
    inputs: "{{ triggerBody() }}"
"""

STRIPE = """\
name: stripe_events
triggers:
  webhook:
    type: Request
    auth: {type: stripe, connection: stripe, tolerance: 300, events: ["payment_intent.*"]}
actions:
  note:
    type: Compose
    inputs: {event: "{{ triggerBody().id }}", type: "{{ triggerBody().type }}"}
outputs:
  event: {value: "{{ outputs('note') }}"}
"""

TWILIO = """\
name: sms
triggers:
  inbound:
    type: Request
    auth: {type: twilio, connection: twilio}
actions:
  reply:
    type: Response
    inputs:
      headers: {Content-Type: text/xml}
      body: "<Response><Message>Got {{ triggerBody().Body }} from {{ triggerBody().From }}</Message></Response>"
"""

EVENTGRID = """\
name: blobs
triggers:
  events:
    type: Request
    auth: {type: eventgrid, connection: eventgrid}
actions:
  note:
    type: Compose
    inputs: "{{ triggerBody() }}"
outputs:
  body: {value: "{{ outputs('note') }}"}
"""

BAD_NO_AUTH = """\
name: bad_no_auth
triggers:
  hook:
    type: Request
actions:
  a: {type: Compose, inputs: 1}
"""

BAD_AUTH_KIND = """\
name: bad_kind
triggers:
  hook:
    type: Request
    auth: {type: hmca, connection: github}
actions:
  a: {type: Compose, inputs: 1}
"""

ALL = {"echo.yaml": ECHO, "echo_path.yaml": ECHO_PATH, "orders.yaml": ORDERS, "keyed_query.yaml": KEYED_QUERY,
       "slow_reply.yaml": SLOW_REPLY, "no_reply.yaml": NO_REPLY, "github.yaml": GITHUB, "stripe.yaml": STRIPE,
       "twilio.yaml": TWILIO, "eventgrid.yaml": EVENTGRID, "bad_no_auth.yaml": BAD_NO_AUTH,
       "bad_kind.yaml": BAD_AUTH_KIND}
