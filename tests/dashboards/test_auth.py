"""Users, roles and password hashes."""

from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from dashboards import auth


def test_dev_users_are_hashed_and_authenticate():
    users = auth.load_users(None)
    assert set(users) == {"admin", "operator", "viewer"}
    assert all(u.password_hash != u.name for u in users.values())
    assert auth.authenticate(users, "operator", "operator").role == "operator"
    assert auth.authenticate(users, "operator", "wrong") is None
    assert auth.authenticate(users, "nobody", "x") is None


def test_users_file(tmp_path):
    f = tmp_path / "users.yaml"
    f.write_text("users:\n  - name: ana\n    role: admin\n    password_hash: '"
                 + generate_password_hash("s3cret") + "'\n")
    users = auth.load_users(f)
    assert auth.authenticate(users, "ana", "s3cret").role == "admin"
    f.write_text("users:\n  - {name: bob, role: boss, password_hash: x}\n")
    with pytest.raises(ValueError, match="unknown role"):
        auth.load_users(f)


def test_role_order():
    assert auth.allowed("admin", "operator")
    assert auth.allowed("operator", "operator")
    assert not auth.allowed("viewer", "operator")
    assert not auth.allowed(None, "viewer")
    assert not auth.allowed("root", "viewer")


def test_broken_users_files_name_the_file_and_fix(tmp_path):
    from citypulse.settings import ConfigError

    f = tmp_path / "users.yaml"
    f.write_text("users:\n  - {name: ana, role: admin, password_hash: [\n")
    with pytest.raises(ConfigError, match=r"users.yaml: line \d+: not valid YAML"):
        auth.load_users(f)
    f.write_text("users:\n  - {name: ana, role: admin, password_hash: s3cret}\n")
    with pytest.raises(ConfigError, match="not a werkzeug hash"):
        auth.load_users(f)
    f.write_text("users:\n  - {role: admin}\n")
    with pytest.raises(ConfigError, match="user #1 needs name"):
        auth.load_users(f)
    with pytest.raises(ConfigError, match="cannot read"):
        auth.load_users(tmp_path / "missing.yaml")
