select id, order_id, amount from {{ source('shop', 'raw_payments') }}
