import pytest

from vllm_fleet.images import accelerator_of, archive_image_id, archive_tags, is_pinned


@pytest.mark.parametrize(
    "ref, pinned",
    [
        ("vllm/vllm-openai:v0.11.0", True),
        ("registry.local:5000/vllm/vllm-openai:v0.11.0", True),
        ("vllm/vllm-openai@sha256:" + "0" * 64, True),
        ("vllm/vllm-openai", False),
        ("vllm/vllm-openai:latest", False),
        ("registry.local:5000/vllm", False),
        # Docker's grammar refuses these, pinned or not.
        ("vllm/vllm-openai:v1\nExecStartPre=/bin/sh", False),
        ("Vllm/vllm-openai:v1", False),
        ("vllm/vllm-openai:v1\n", False),
        ("Registry.Example:5000/vllm/vllm-openai:v1", True),
        ("vllm/vllm-openai:v1 --privileged", False),
        ("vllm//vllm-openai:v1", False),
        ("vllm/vllm-openai:-v1", False),
        ("vllm/vllm-openai:" + "v" * 121 + "Zq7wPm2x", False),
        ("-vllm/vllm-openai:v1", False),
        ("vllm/vllm-openai@sha256:abc", False),
        ("vllm/vllm-openai@sha256:" + "0" * 63, False),
        ("vllm/vllm-openai@md5:" + "0" * 32, False),
        ("vllm/vllm-openai@sha256:" + "A" * 64, False),
        ("vllm/vllm-openai:v1@sha256:" + "f" * 64, True),
        ("[fd00::1]:5000/vllm/vllm-openai:v1", True),
    ],
)
def test_is_pinned(ref, pinned):
    assert is_pinned(ref) is pinned


def test_archive_image_id_oci_and_legacy_layouts(tmp_path, make_archive):
    oci = make_archive(tmp_path, "a/b:1", config="blobs/sha256/" + "cd" * 32)
    assert archive_image_id(oci, "a/b:1") == "sha256:" + "cd" * 32
    (tmp_path / "legacy").mkdir()
    legacy = make_archive(tmp_path / "legacy", "a/b:1", config="ef" * 32 + ".json")
    assert archive_image_id(legacy, "a/b:1") == "sha256:" + "ef" * 32
    with pytest.raises(ValueError, match="does not hold a/b:2"):
        archive_image_id(oci, "a/b:2")


def test_archive_tags_of_a_file_that_is_no_archive(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_text("not a tar")
    assert archive_tags(str(junk)) == set()


@pytest.mark.parametrize(
    "ref, accelerator",
    [
        ("vllm/vllm-openai:v0.33.0", "nvidia"),
        ("docker.io/vllm/vllm-openai:v0.33.0", "nvidia"),
        ("vllm/vllm-openai-rocm:v0.33.0", "amd"),
        ("rocm/vllm:latest-rocm6.4", "amd"),
        ("vllm/vllm-openai-cpu:v0.33.0-x86_64", "cpu"),
        ("registry.local/mirror/vllm-openai:v0.33.0", None),
    ],
)
def test_accelerator_of(ref, accelerator):
    assert accelerator_of(ref) == accelerator
