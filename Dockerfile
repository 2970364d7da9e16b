# The Airflow image the compose stack runs: the official image plus mlinfra's pinned dependencies.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt constraints.txt /opt/mlinfra/
RUN pip install --no-cache-dir -r /opt/mlinfra/requirements.txt -c /opt/mlinfra/constraints.txt
