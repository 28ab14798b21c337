import time


def model(dbt, session):
    dbt.config(materialized="table", tags=["slow"])
    time.sleep(600)  # the cancel tests kill it long before this ends
    return session.sql("select 1 as one")
