"""Shared pytest settings and the session's real parts.

* Deterministic seeds and at most 2 torch threads (the machines are shared 2-core boxes).
* ``suite_env``: a temporary ``ATTENTION_SUITE_HOME`` with an MLflow sqlite store in it, set before
  any Ray process starts so that workers and replicas inherit it.
* ``ray_cluster``: one real local Ray cluster (2 CPUs) for the whole session, with Serve on a free
  port; started only by the tests that need it.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter; the flag must be set before any kernel
# module is imported (it is read when @triton.jit decorates), which the test modules do after this.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# ATTENTION_SUITE_TEST_THREADS: the learning-spread runs (see tests/learning.py) use 1 and 2.
torch.set_num_threads(int(os.environ.get("ATTENTION_SUITE_TEST_THREADS", max(1, min(2, torch.get_num_threads())))))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def suite_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("suite_home")
    previous = {k: os.environ.get(k) for k in ("ATTENTION_SUITE_HOME", "MLFLOW_TRACKING_URI")}
    os.environ["ATTENTION_SUITE_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    import mlflow

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    yield home
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(suite_env):
    import ray
    from ray import serve

    # as deploy/env.sh: Serve's 5 s proxy ready check fails serve.start on a loaded machine (seen in this
    # fixture with two trainings on the two cores)
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "30")
    # address="local": a fresh cluster of our own even if `make up` has one running on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield {"http": f"http://127.0.0.1:{port}", "home": suite_env}
    serve.shutdown()
    ray.shutdown()


@pytest.fixture(scope="session")
def trained_tsp(ray_cluster):
    """tiny-tsp on 2 Ray Train workers, with the last worker killed once after the first epoch."""
    from pipelines.common.driver import train
    from pipelines.pointer import ReinforcePipeline

    return train(ReinforcePipeline, "tiny-tsp", workers=2, fail_at_epoch=0)


@pytest.fixture(scope="session")
def trained_hull(ray_cluster):
    """tiny-hull trained in-process (Ray Train local mode) and registered."""
    from pipelines.common.driver import train
    from pipelines.pointer import SupervisedPipeline

    return train(SupervisedPipeline, "tiny-hull", workers=0)


@pytest.fixture(scope="session")
def trained_recommenders(ray_cluster):
    """tiny-next (Markov sequences, 2 Ray Train workers) and tiny-ctr (synthetic clicks, in-process)."""
    from pipelines.common.driver import train
    from pipelines.recommendation import ClickPipeline, NextItemPipeline

    return {
        "next": train(NextItemPipeline, "tiny-next", workers=2),
        "rank": train(ClickPipeline, "tiny-ctr", workers=0),
    }


@pytest.fixture(scope="session")
def trained_vision(ray_cluster):
    """tiny-van on scikit-learn's digits, in-process, registered as vision-van-digits."""
    from pipelines.common.driver import train
    from pipelines.vision import ClassifyPipeline

    return train(ClassifyPipeline, "tiny-van", workers=0)


@pytest.fixture(scope="session")
def trained_genomics(ray_cluster):
    """tiny-lm (synthetic Markov genome), tiny-splice (UCI-like synthetic) and tiny-coding (the shipped
    chloroplast genome), each in-process and registered."""
    from pipelines.common.driver import train
    from pipelines.genomics import DOMAIN

    names = ("tiny-lm", "tiny-splice", "tiny-coding")
    return {name: train(DOMAIN.pipeline_class(name), name, workers=0) for name in names}
