"""What prune may delete and what verify may call good, on the local store and on moto_server (signature
checks on, bucket-root destination): real dumps made by the agent, then hostile edits of the store made
with os / boto3 — a manifest copied to an older id, another job's backups in the same location, damaged
backups, corrupt or empty manifests — and which objects still exist afterwards."""
import json
import os
import time

import pytest

from test_postgres_s3 import remote_keys

DAY = 86400 * 1000000


class LocalPlace:
    """The postgres destination as a local directory."""

    def __init__(self, agent):
        self.dir = agent.store / "postgres"
        self.destination = str(self.dir)
        self.location = str(self.dir)

    def remotes(self):
        return {}

    def put(self, name, data):
        p = self.dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def get(self, name):
        return (self.dir / name).read_bytes()

    def delete(self, name):
        (self.dir / name).unlink()

    def keys(self):
        out = []
        for root, _, files in os.walk(self.dir):
            out += [os.path.relpath(os.path.join(root, f), self.dir) for f in files]
        return sorted(out)


class S3Place:
    """The postgres destination as a bucket root on moto_server with signature checks on."""

    def __init__(self, s3_server, bucket, tmp_path):
        self.s3 = s3_server
        self.bucket = bucket
        self.tmp_path = tmp_path
        self.client = s3_server.client()
        self.destination = f"minio:{bucket}"
        self.location = f"minio:{bucket}/"

    def remotes(self):
        return {"remote__minio": remote_keys(self.s3, self.tmp_path)}

    def put(self, name, data):
        self.client.put_object(Bucket=self.bucket, Key=name, Body=data)

    def get(self, name):
        return self.client.get_object(Bucket=self.bucket, Key=name)["Body"].read()

    def delete(self, name):
        self.client.delete_object(Bucket=self.bucket, Key=name)

    def keys(self):
        return sorted(o["Key"] for o in self.client.list_objects_v2(Bucket=self.bucket).get("Contents", []))


@pytest.fixture(params=["local", "s3"])
def place(request, local_agent, tmp_path):
    if request.param == "local":
        return LocalPlace(local_agent)
    s3_server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Place(s3_server, bucket, tmp_path)


def configure(agent, place, cluster, **pg):
    keys = {"conninfo": cluster.conninfo, "destination": place.destination}
    keys.update(pg)
    return agent.configure(postgres=keys, **place.remotes())


def old_id(age_days, now=None):
    t = int((now or time.time()) * 1000000) - age_days * DAY
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t // 1000000)), t


def manifest(place, backup_id):
    return json.loads(place.get(f"{backup_id}.json"))


def fake_backup(place, template_id, new_id, started_usec, job="postgres", suffix=None):
    """A backup under new_id made from template_id's: its data object copied and renamed, its manifest
    edited (id, times, job), as if taken back then."""
    m = manifest(place, template_id)
    obj = m["objects"][0]
    data = place.get(obj["name"])
    obj["name"] = new_id + (suffix or obj["name"][len(template_id):])
    place.put(obj["name"], data)
    m.update(id=new_id, job=job, started_usec=started_usec, finished_usec=started_usec + 1000000)
    place.put(f"{new_id}.json", json.dumps(m).encode())
    return obj["name"]


def listed_ids(agent, job="postgres"):
    return [b["id"] for b in json.loads(agent("list", job, "--json", check=True).stdout)]


# ---- item 6: a backup deletes only what belongs to it ----

def test_prune_of_a_manifest_copied_to_an_older_id_keeps_the_newest_dump(local_agent, place, pg):
    configure(local_agent, place, pg, retention_days=30, keep_min=1)
    newest = local_agent("run", "postgres", check=True).stdout.strip()
    dump = manifest(place, newest)["objects"][0]["name"]
    # The newest manifest copied under an older id, its id and times edited to match: it still lists the
    # newest backup's dump.
    old, t = old_id(40)
    m = manifest(place, newest)
    m.update(id=old, started_usec=t, finished_usec=t + 1000000)
    place.put(f"{old}.json", json.dumps(m).encode())
    assert listed_ids(local_agent) == [newest, old]

    p = local_agent("prune")
    assert p.returncode == 0, p.stderr
    assert f"deleted postgres {old}" in p.stdout
    keys = place.keys()
    assert f"{old}.json" not in keys
    assert dump in keys and f"{newest}.json" in keys, keys
    assert local_agent("verify").returncode == 0
    assert f"{dump} in place" in p.stderr and f"does not start with {old}" in p.stderr, p.stderr


def test_prune_leaves_an_object_a_kept_backup_lists(local_agent, place, pg):
    """The old backup's own dump stays while a kept manifest (here copied, id edited) lists it too."""
    configure(local_agent, place, pg, retention_days=30, keep_min=1)
    real = local_agent("run", "postgres", check=True).stdout.strip()
    old, t_old = old_id(40)
    old_dump = fake_backup(place, real, old, t_old)
    mid, t_mid = old_id(10)
    m = manifest(place, old)
    m.update(id=mid, started_usec=t_mid, finished_usec=t_mid + 1000000)
    place.put(f"{mid}.json", json.dumps(m).encode())

    p = local_agent("prune", check=True)
    assert f"deleted postgres {old}" in p.stdout and f"keep   postgres {mid}" in p.stdout
    keys = place.keys()
    assert f"{old}.json" not in keys and old_dump in keys, keys
    assert local_agent("verify", "postgres", mid).returncode == 0
    assert f"{old_dump} in place" in p.stderr and f"kept backup {mid}" in p.stderr, p.stderr


# ---- item 7 (defensive): another job's backups in the same location ----

def test_another_jobs_backups_in_the_location_are_not_listed_counted_or_touched(local_agent, place, pg):
    configure(local_agent, place, pg, retention_days=30, keep_min=2)
    real = local_agent("run", "postgres", check=True).stdout.strip()
    pg_old, t = old_id(40)
    pg_old_dump = fake_backup(place, real, pg_old, t)
    # config backups (one recent, one old) and one config upload in flight: no manifest yet.
    cfg_new, t_new = old_id(1)
    cfg_old, t_old = old_id(50)
    cfg_objects = [fake_backup(place, real, cfg_new, t_new, job="config", suffix=".tar.zst"),
                   fake_backup(place, real, cfg_old, t_old, job="config", suffix=".tar.zst")]
    in_flight, _ = old_id(3)
    place.put(f"{in_flight}.tar.zst", b"config archive being written")

    assert listed_ids(local_agent) == [real, pg_old]
    time.sleep(1.1)
    newest = local_agent("run", "postgres", check=True).stdout.strip()
    # keep_min = 2 counts postgres backups only: real and newest; pg_old is older than 30 days.
    assert listed_ids(local_agent) == [newest, real]
    keys = place.keys()
    assert f"{pg_old}.json" not in keys and pg_old_dump not in keys
    for k in [f"{cfg_new}.json", f"{cfg_old}.json", f"{in_flight}.tar.zst"] + cfg_objects:
        assert k in keys, (k, keys)
    p = local_agent("prune", "postgres", check=True)
    assert cfg_old not in p.stdout and cfg_new not in p.stdout


def test_jobs_sharing_a_destination_are_refused_with_file_and_line(local_agent, pg, tmp_path):
    shared = tmp_path / "store" / "shared"
    local_agent.configure(postgres={"conninfo": pg.conninfo, "destination": shared},
                          config={"recipients": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
                                  "manifests": tmp_path, "destination": f"{shared}/config"})
    lines = local_agent.config_path.read_text().splitlines()
    line = lines.index(f"destination = {shared}") + 1
    p = local_agent("config", "check")
    assert p.returncode == 78, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert f"{local_agent.config_path}:{line}: destination: postgres's destination {shared} contains " \
           f"config's ({shared}/config)" in out, out
    assert f"e.g. destination = {shared}/postgres" in out
    p = local_agent("run", "postgres")
    assert p.returncode == 78 and f":{line}: destination:" in p.stderr
    assert not shared.exists()


# ---- item 8: only intact backups count toward keep_min ----

def test_retention_counts_only_intact_backups_toward_keep_min(local_agent, place, pg):
    configure(local_agent, place, pg, retention_days=30, keep_min=2)
    real = local_agent("run", "postgres", check=True).stdout.strip()
    ids, dumps = [], []
    for age in (40, 50, 60, 70):
        bid, t = old_id(age)
        dumps.append(fake_backup(place, real, bid, t))
        ids.append(bid)
    place.delete(dumps[0])                          # 40 days: its dump is gone
    place.put(dumps[1], place.get(dumps[1])[:-100])  # 50 days: truncated

    dry = local_agent("prune", "--dry-run", check=True).stdout
    assert f"keep   postgres {ids[0]}" in dry and f"{dumps[0]} is missing" in dry and "not counted" in dry
    assert f"would delete postgres {ids[1]}" in dry and "the manifest says" in dry
    # Two intact backups stay: the real one and the 60 days old one, though it is past retention_days.
    assert f"keep   postgres {ids[2]}" in dry and "newest 2 intact" in dry
    assert f"would delete postgres {ids[3]}" in dry

    local_agent("prune", check=True)
    assert listed_ids(local_agent) == [real, ids[0], ids[2]]
    keys = place.keys()
    assert dumps[2] in keys and dumps[3] not in keys
    assert local_agent("verify", "postgres", ids[2]).returncode == 0


# ---- items 9 and 10: what verify may call good ----

def test_verify_reports_a_corrupt_newest_manifest(local_agent, place, pg):
    configure(local_agent, place, pg)
    older = local_agent("run", "postgres", check=True).stdout.strip()
    time.sleep(1.1)
    newest = local_agent("run", "postgres", check=True).stdout.strip()
    text = place.get(f"{newest}.json")
    place.put(f"{newest}.json", text[: len(text) // 2])

    for args in (["verify"], ["verify", "--all"], ["verify", "postgres", newest]):
        p = local_agent(*args)
        assert p.returncode == 65, (args, p.stdout, p.stderr)
        assert f"postgres {newest} DAMAGED" in p.stdout, p.stdout
        assert f"{newest}.json is unreadable: manifest is not valid JSON" in p.stdout
        assert "all good" not in p.stdout + p.stderr
    # The default names the newest usable backup too, so the operator sees what is left.
    p = local_agent("verify")
    assert f"postgres {older} ok" in p.stdout
    st = json.loads((local_agent.state_dir / "postgres.json").read_text())
    v = json.loads(st["last_verify"])
    assert v["result"] == "damaged" and v["damaged"] == 1
    b = v["backups"][0]
    assert b["id"] == newest and not b["ok"] and not b["manifest_ok"] and "not valid JSON" in b["problems"][0]

    # A manifest copied under another name (its id not edited) is damaged too, not a second backup.
    place.put(f"{newest}.json", text)
    copy, _ = old_id(30)
    place.put(f"{copy}.json", place.get(f"{older}.json"))
    p = local_agent("verify", "--all")
    assert p.returncode == 65
    assert f"{copy}.json holds backup {older}, not {copy}" in p.stdout
    assert listed_ids(local_agent) == [newest, older]


def test_verify_without_any_backup_exits_66(local_agent, place, pg):
    configure(local_agent, place, pg)
    for args in (["verify"], ["verify", "postgres", "--all"], ["verify", "postgres", "latest"]):
        p = local_agent(*args)
        assert p.returncode == 66, (args, p.stdout, p.stderr)
        assert f"no backups of postgres at {place.location}; has the job run? see `skyforge-agent status`" \
            in p.stderr, p.stderr
        assert "all good" not in p.stdout + p.stderr
    st = json.loads((local_agent.state_dir / "postgres.json").read_text())
    assert json.loads(st["last_verify"])["result"] == "no-backups"


@pytest.mark.parametrize("defect,edit", [
    ("lists no objects", lambda m: m.update(objects=[])),
    ("not a plain name", lambda m: m["objects"][0].update(name="../" + m["objects"][0]["name"])),
    ("not a plain name", lambda m: m["objects"][0].update(name="/etc/passwd")),
    ("twice", lambda m: m["objects"].append(dict(m["objects"][0]))),
])
def test_verify_calls_an_unusable_manifest_a_damaged_backup(local_agent, place, pg, defect, edit):
    configure(local_agent, place, pg)
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()
    m = manifest(place, backup_id)
    edit(m)
    place.put(f"{backup_id}.json", json.dumps(m).encode())

    p = local_agent("verify")
    assert p.returncode == 65, (p.stdout, p.stderr)
    assert f"postgres {backup_id} DAMAGED" in p.stdout
    assert f"{backup_id}.json is unreadable: manifest" in p.stdout and defect in p.stdout, p.stdout
    # restore refuses it by name, too, rather than restoring nothing
    p = local_agent("restore", "postgres", backup_id, "--to", pg.conninfo)
    assert p.returncode != 0


def test_verify_calls_an_oversized_or_nul_manifest_a_damaged_backup(local_agent, pg):
    place = LocalPlace(local_agent)
    configure(local_agent, place, pg)
    backup_id = local_agent("run", "postgres", check=True).stdout.strip()
    text = place.get(f"{backup_id}.json")
    place.put(f"{backup_id}.json", text + b" " * (17 * 1024 * 1024))
    p = local_agent("verify", "postgres", backup_id)
    assert p.returncode == 65 and "is larger than" in p.stdout, (p.stdout, p.stderr)
    place.put(f"{backup_id}.json", text.replace(b"{", b"{\0", 1))
    p = local_agent("verify")
    assert p.returncode == 65 and "contains a NUL byte" in p.stdout, (p.stdout, p.stderr)
