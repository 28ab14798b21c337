{{ config(tags=["echo"], materialized="view") }}
-- label: {{ var("label", "") }}
select 1 as one
