select customer, sum(amount) as total, count(*) as orders
from {{ ref('stg_orders') }}
group by customer
