"""Smoke predictions: TFServingHook vs the raw clients, on the same stand-in and model, in one run.

gRPC: ``TFServingHook.predict`` (builds the request from lists, converts the answer back
to lists, maps errors) vs a prebuilt ``PredictRequest`` sent through the raw
``PredictionServiceStub`` on its own channel. REST: ``TFServingHook.rest_predict`` vs a
plain ``httpx.Client.post`` of the same JSON. The smoke test's request pattern: the
``batch`` case of include/smoke/half_plus_two.json, ``--concurrency`` threads.

Each round times both sides back to back (alternating which goes first); the ratio is
the median of the rounds' ratios, so drift (other processes, CPU frequency) hits both.
Targets: throughput ratio hook/raw >= 0.9 for gRPC and for REST.

    python -m bench.bench_deploy [--requests 400] [--concurrency 4] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

INPUTS = {"x": [1.0, 2.0, 5.0]}
EXPECTED = [2.5, 3.0, 4.5]


def throughput(call: Callable[[], Any], requests: int, concurrency: int) -> float:
    """Requests per second for ``requests`` calls on ``concurrency`` threads."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: call(), range(requests)))
        return requests / (time.perf_counter() - start)


def compare(name: str, ours: Callable[[], Any], raw: Callable[[], Any], args: argparse.Namespace) -> float:
    """Median of paired ratios: each round times both sides back to back (order alternating)."""
    for call in (ours, raw):  # warm up connections and caches
        throughput(call, 50, args.concurrency)
    ratios, a, b = [], [], []
    for i in range(args.rounds):
        if i % 2:
            y = throughput(raw, args.requests, args.concurrency)
            x = throughput(ours, args.requests, args.concurrency)
        else:
            x = throughput(ours, args.requests, args.concurrency)
            y = throughput(raw, args.requests, args.concurrency)
        a.append(x)
        b.append(y)
        ratios.append(x / y)
    ratio = statistics.median(ratios)
    print(
        f"{name}: hook {statistics.median(a):8.0f} req/s, raw {statistics.median(b):8.0f} req/s, "
        f"ratio {ratio:.3f} (median of {args.rounds} paired rounds; target >= 0.9) "
        f"{'OK' if ratio >= 0.9 else 'BELOW TARGET'}"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    import grpc
    import httpx

    from mlinfra.hooks.tf_serving import TFServingHook
    from mlinfra.hooks.tf_serving_protos import load_protos, make_tensor_proto, tensor_to_list
    from tests.support.tf_serving_standin import start_tf_serving_standin

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)

    with start_tf_serving_standin() as server:
        hook = TFServingHook("bench", grpc_target=server.grpc_target, rest_url=server.rest_url)
        hook.__dict__["_extras"] = {}  # no Airflow connection needed: explicit addresses, plaintext
        protos = load_protos()
        channel = grpc.insecure_channel(server.grpc_target)
        stub = protos.prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = protos.predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.signature_name = "serving_default"
        request.model_spec.version.value = 1
        request.inputs["x"].CopyFrom(make_tensor_proto(INPUTS["x"], "float32"))
        http = httpx.Client(base_url=server.rest_url, timeout=10)
        body = {"signature_name": "serving_default", "inputs": INPUTS}

        def hook_grpc() -> Any:
            return hook.predict("half_plus_two", INPUTS, 1)

        def raw_grpc() -> Any:
            return tensor_to_list(stub.Predict(request, timeout=10).outputs["y"])

        def hook_rest() -> Any:
            return hook.rest_predict("half_plus_two", inputs=INPUTS, version=1)

        def raw_rest() -> Any:
            response = http.post("/v1/models/half_plus_two/versions/1:predict", json=body)
            response.raise_for_status()
            return response.json()

        # Same answers before timing anything.
        if not (
            hook_grpc()["y"] == raw_grpc() == EXPECTED == hook_rest()["outputs"] == raw_rest()["outputs"]
        ):
            raise SystemExit("the clients disagree; not benchmarking")
        print(
            f"TF Serving stand-in {server.grpc_target}; {args.requests} requests x {args.rounds} rounds, "
            f"concurrency {args.concurrency}"
        )
        grpc_ratio = compare("gRPC Predict", hook_grpc, raw_grpc, args)
        rest_ratio = compare("REST predict", hook_rest, raw_rest, args)
        hook.close()
        channel.close()
        http.close()
    return 0 if grpc_ratio >= 0.9 and rest_ratio >= 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
