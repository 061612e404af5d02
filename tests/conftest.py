"""Fixtures shared by unit and integration tests."""

import pytest


@pytest.fixture(scope="session")
def make_archive():
    """A minimal `docker save` archive (manifest only) holding one tag."""
    import io
    import json
    import tarfile

    def make(directory, tag, config="blobs/sha256/" + "ab" * 32):
        path = directory / "image.tar"
        manifest = json.dumps([{"Config": config, "RepoTags": [tag], "Layers": []}]).encode()
        with tarfile.open(path, "w") as tar:
            info = tarfile.TarInfo("manifest.json")
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
        return str(path)

    return make
