"""Shared bits of the fleet tests."""

import base64
import os
import struct


def ssh_key(comment: str = "alice@laptop") -> str:
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + os.urandom(32)
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def agent_info(cpu=4, mem=8192, disk=100000, engines=("docker", "qemu"), images=None) -> dict:
    return {
        "host_id": "h", "hostname": "h", "version": "0", "engines": list(engines), "engines_unavailable": {},
        "storage": "file", "vm_count": 0,
        "resources": {"cpu_total": cpu, "mem_total": mem, "disk_total": disk, "cpu_used": 0, "mem_used": 0,
                      "disk_used": 0},
        "images": images if images is not None else [
            {"name": "alpine", "engines": ["qemu"], "kind": "disk", "format": "qcow2", "size": 1,
             "description": ""}],
    }


def env_body(env_id="my-env", **vm):
    spec = {"image": "ttstack/tiny:latest", "engine": "docker", "cpu": 1, "mem": 64, "disk": 64}
    spec.update(vm)
    return {"id": env_id, "owner": "alice", "ssh_keys": [ssh_key()], "vms": [spec], "lifetime": 600}
