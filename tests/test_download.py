"""Downloads in task specs, against a real HTTP server on 127.0.0.1 serving a tmp folder."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from mnms.data.download import fetch_verified
from mnms.data.tasks import SPLITS, TaskError, load_task


class Server:
    """Serves `root`, remembering every requested path."""

    def __init__(self, root: Path) -> None:
        self.root, self.requests = root, []

        server = self

        class CountingHandler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    serving = Server(root)
    thread = threading.Thread(target=serving.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield serving
    serving.httpd.shutdown()
    serving.httpd.server_close()
    thread.join()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reviews(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {"text": [f"review {offset + i}" for i in range(n)], "label": ["good" if i % 3 else "bad" for i in range(n)]}
    )


def write_spec(folder: Path, name: str, downloads: list[dict], **fields) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(json.dumps({"downloads": downloads, "language": "en", **fields}))


@pytest.fixture
def served_files(server: Server) -> list[dict]:
    """A CSV train file and a Parquet test file, as spec download entries."""
    reviews(90).to_csv(server.root / "train.csv", index=False)
    reviews(30, offset=500).to_parquet(server.root / "test.parquet")
    return [
        {"url": f"{server.url}/{name}", "sha256": sha256(server.root / name), "split": split}
        for name, split in (("train.csv", "train"), ("test.parquet", "test"))
    ]


def test_download_is_verified_converted_and_fetched_once(tmp_path: Path, server: Server, served_files) -> None:
    data, specs = tmp_path / "data", tmp_path / "specs"
    data.mkdir()
    write_spec(specs, "web", served_files)
    task = load_task("web", data, spec_dirs=[specs])
    assert [len(task.splits[s]) for s in SPLITS] == [81, 9, 30]  # validation carved: 10% of train
    assert (task.labels, task.language) == (("bad", "good"), "en")
    assert sorted(server.requests) == ["/test.parquet", "/train.csv"]
    folder = data / "web"
    assert {p.name for p in folder.iterdir()} == {"raw", "meta.json", *(f"{s}.jsonl" for s in SPLITS)}
    assert sha256(folder / "raw" / "train.csv") == served_files[0]["sha256"]
    assert json.loads((folder / "meta.json").read_text())["counts"] == {"train": 81, "validation": 9, "test": 30}

    prints = [task.fingerprint(s) for s in SPLITS]
    assert [load_task("web", data, spec_dirs=[specs]).fingerprint(s) for s in SPLITS] == prints
    assert [load_task("web", data).fingerprint(s) for s in SPLITS] == prints  # a plain folder load, no spec
    assert len(server.requests) == 2  # nothing fetched again

    # Editing the spec re-converts from the verified raw files, still without fetching.
    write_spec(specs, "web", served_files, validation_fraction=0.2)
    assert len(load_task("web", data, spec_dirs=[specs]).splits["validation"]) == 18
    assert len(server.requests) == 2


def test_wrong_hash_names_both_hashes_and_leaves_nothing(tmp_path: Path, server: Server, served_files) -> None:
    data, specs = tmp_path / "data", tmp_path / "specs"
    data.mkdir()
    actual = served_files[0]["sha256"]
    write_spec(specs, "web", [{**served_files[0], "sha256": "ab" * 32}])
    with pytest.raises(TaskError) as caught:
        load_task("web", data, spec_dirs=[specs])
    message = str(caught.value)
    assert message.startswith("task 'web': ")
    assert all(part in message for part in (served_files[0]["url"], actual, "ab" * 32, "Fix:"))
    assert list((data / "web" / "raw").iterdir()) == []  # no partial or unverified file
    assert not (data / "web" / "meta.json").exists()


def test_a_corrupted_raw_file_is_fetched_again(tmp_path: Path, server: Server, served_files) -> None:
    target = tmp_path / "raw" / "train.csv"
    target.parent.mkdir()
    target.write_text("truncated")
    entry = served_files[0]
    assert fetch_verified(entry["url"], entry["sha256"], target, task="web") == target
    assert sha256(target) == entry["sha256"] and server.requests == ["/train.csv"]
    fetch_verified(entry["url"], entry["sha256"], target, task="web")
    assert server.requests == ["/train.csv"]


def test_unreachable_file_names_the_url(tmp_path: Path, server: Server) -> None:
    with pytest.raises(TaskError, match=r"task 'web': could not download .*/missing\.csv .*404"):
        fetch_verified(f"{server.url}/missing.csv", "0" * 64, tmp_path / "raw" / "missing.csv", task="web")
    assert list((tmp_path / "raw").iterdir()) == []


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"url": "http://h/a.csv", "sha256": "abc", "split": "train"}, r"invalid sha256 'abc'.*quoted string"),
        ({"url": "http://h/a.csv", "sha256": "0" * 64, "split": "dev"}, r"invalid download split 'dev'"),
        ({"url": "http://h/", "sha256": "0" * 64, "split": "train"}, r"invalid download filename ''.*add `filename:`"),
        ({"url": "http://h/a.csv", "split": "train"}, r"invalid downloads entry .*give url, sha256 and split"),
    ],
)
def test_bad_download_entries_fail_before_fetching(tmp_path: Path, entry: dict, expected: str) -> None:
    write_spec(tmp_path, "web", [entry])
    with pytest.raises(TaskError, match=expected):
        load_task(str(tmp_path / "web.yaml"), tmp_path)


def test_a_spec_never_overwrites_a_folder_it_did_not_convert(tmp_path: Path, server: Server, served_files) -> None:
    handmade = tmp_path / "data" / "web" / "train.jsonl"
    handmade.parent.mkdir(parents=True)
    handmade.write_text('{"text": "mine", "label": "a"}\n')
    write_spec(tmp_path / "specs", "web", served_files)
    with pytest.raises(TaskError, match=r"web holds a task that was not converted from task spec .*web\.yaml"):
        load_task("web", tmp_path / "data", spec_dirs=[tmp_path / "specs"])
    assert server.requests == [] and handmade.read_text() == '{"text": "mine", "label": "a"}\n'
