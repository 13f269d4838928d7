"""The suite's own real parts work: private engine, registry, image pulled from it."""

import docker


def test_image_from_the_local_registry_runs_on_the_private_engine(
    docker_client: docker.DockerClient, test_image: str
) -> None:
    docker_client.images.remove(test_image, force=True)
    docker_client.images.pull(test_image)
    out = docker_client.containers.run(test_image, ["echo", "hello"], remove=True)
    assert out == b"hello\n"
