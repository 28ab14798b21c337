-- orders as the source has them, with only shipped ones kept
select id, customer, amount
from {{ ref('raw_orders') }}
where status = 'shipped'
  and amount >= {{ var('min_amount', 0) }}
