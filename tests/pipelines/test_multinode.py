"""The job on a local multi-node cluster: inference lands only on the (fake) GPU node, featurization spreads."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.conftest import write_audio

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 150 * 2**20})
    cpu_node = nodes.add_node(num_cpus=1, object_store_memory=150 * 2**20)
    gpu_node = nodes.add_node(num_cpus=1, num_gpus=1, object_store_memory=150 * 2**20)
    ray.init(address=nodes.address, logging_level="ERROR")
    nodes.wait_for_nodes()
    yield {"head": nodes.head_node.node_id, "cpu": cpu_node.node_id, "gpu": gpu_node.node_id}
    ray.shutdown()
    nodes.shutdown()


def test_accelerator_stage_runs_only_on_the_gpu_node_and_featurization_spreads(cluster, tiny_bundle, tmp_path):
    from ray.util.state import list_actors

    from pipelines.classify import JobOptions, plan_resources, run_classification

    for i in range(12):
        write_audio(tmp_path / "in" / f"clip {i:02d}.wav", 2.0, 22050, 1, frequency_hz=200 + 50 * i, seed=i)
    options = JobOptions(inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"), model=tiny_bundle)
    plan = plan_resources(options, {"CPU": 3, "GPU": 1})
    assert (plan.accelerator_actors, plan.gpus_per_actor, plan.cpu_actors) == (1, 1.0, 3)

    summary = run_classification(options, progress=False)
    assert summary.ok == 12 and pq.read_table(tmp_path / "out").num_rows == 12

    actors = list_actors(detail=True, limit=1000, raise_on_missing_output=False)
    inference_nodes = {a.node_id for a in actors if "ClassifyWindows" in (a.class_name or "")}
    featurize_nodes = {a.node_id for a in actors if "FeaturizeFiles" in (a.class_name or "")}
    assert inference_nodes == {cluster["gpu"]}
    assert len(featurize_nodes) >= 2, featurize_nodes
