{% test accepted_range_below(model, column_name, max_value) %}
select * from {{ model }} where {{ column_name }} > {{ max_value }}
{% endtest %}
