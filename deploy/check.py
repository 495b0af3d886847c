#!/usr/bin/env python3
"""Offline checks of the deploy files (.ci/run runs this from the repository
root; so can you): every YAML and JSON file parses, and the files agree with
each other and with egressd.

  python3 deploy/check.py [--promql-rules FILE]

- compose: three egressd replicas built from the repository, on the store
  (--store postgres://...), each with its own data dir; the master key and
  the database password only as ${VAR:?message} references; HAProxy's
  servers and health checks and Prometheus's targets match the replicas'
  listen flags; the Prometheus rule file resolves in the container as in the
  repository.
- kubernetes: each document has apiVersion, kind and metadata.name; the
  kustomization lists every manifest but the Secret template; the
  Deployment runs 3 replicas, non-root with a read-only root file system
  and the data dir on an emptyDir; its probes (/readyz, /healthz) ask the
  admin port of --admin-listen; every secretKeyRef names a key of the
  Secret template, whose values are marked placeholders; Services and the
  PodDisruptionBudget (minAvailable 2) select the pods' labels; the admin
  Service stays ClusterIP.
- grafana: the dashboard's panels and their metrics: each egressd_* metric
  is registered in the Go code, or is one of the cluster-mode metrics still
  to come and its panel says so.
- prometheus: each alert has a for, a severity, a summary, a description and
  a runbook naming a heading of docs/deploy.md, and a unit test that fires
  it; its metrics are egressd's.

--promql-rules FILE writes the dashboard's queries as recording rules (the
Grafana variables replaced), for promtool check rules to parse.

Needs PyYAML (Debian: python3-yaml).
"""

import argparse
import glob
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")

# Metrics of cluster mode (issue 14) that the dashboard and the alert rules
# may use before egressd registers them.
PLANNED = {
    "egressd_store_invalidation_lag_seconds",
    "egressd_store_listener_reconnects_total",
    "egressd_store_listener_up",
    "egressd_oauth_refresh_failures_total",
}
PLANNED_MARK = "Not exported yet"

errors = []
notes = []


def fail(where, msg):
    errors.append(f"{where}: {msg}")


def rel(path):
    return os.path.relpath(path, ROOT)


def load_yaml_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ---- every file parses ------------------------------------------------------

def check_parse():
    n = 0
    for path in sorted(glob.glob(os.path.join(DEPLOY, "**", "*"), recursive=True)):
        if path.endswith((".yml", ".yaml")):
            try:
                load_yaml_docs(path)
                n += 1
            except yaml.YAMLError as e:
                fail(rel(path), f"YAML does not parse: {e}")
        elif path.endswith(".json"):
            try:
                with open(path) as f:
                    json.load(f)
                n += 1
            except ValueError as e:
                fail(rel(path), f"JSON does not parse: {e}")
    print(f"ok: {n} YAML and JSON files under deploy/ parse")


# ---- flags ------------------------------------------------------------------

def flag(args, name):
    """The value of --name in an argument list (--name=V or --name V)."""
    for i, a in enumerate(args):
        for p in ("--" + name, "-" + name):
            if a == p and i + 1 < len(args):
                return str(args[i + 1])
            if a.startswith(p + "="):
                return a[len(p) + 1:]
    return None


def port_of(addr):
    return int(addr.rsplit(":", 1)[1]) if addr and ":" in addr else None


# ---- compose ----------------------------------------------------------------

SECRET_ENV = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|DSN", re.I)
REQUIRED_REF = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*):\?[^}]+\}$")


def check_compose():
    d = os.path.join(DEPLOY, "compose")
    path = os.path.join(d, "docker-compose.yml")
    where = rel(path)
    (c,) = load_yaml_docs(path)
    svcs = c.get("services", {})
    replicas = {n: s for n, s in svcs.items() if isinstance(s.get("build"), dict)
                and s["build"].get("context") == "../.."}
    if len(replicas) != 3:
        fail(where, f"want 3 egressd services built from ../.., have {sorted(replicas)}")
    if not str(svcs.get("postgres", {}).get("image", "")).startswith("postgres:15"):
        fail(where, "the postgres service must run PostgreSQL 15 (image postgres:15...)")
    if not os.path.exists(os.path.join(d, svcs_build_dockerfile(replicas))):
        fail(where, "the replicas' Dockerfile does not exist")

    # No literal secret anywhere: a variable the operator sets, required.
    for name, s in svcs.items():
        env = s.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        for k, v in env.items():
            if SECRET_ENV.search(k) and v is not None and not REQUIRED_REF.match(str(v)):
                fail(where, f"{name}: {k} must be a required variable reference ${{VAR:?message}}, not a value")
    listens = {}
    data_vols = {}
    for name, s in sorted(replicas.items()):
        args = [str(a) for a in s.get("command") or []]
        if not args or args[0] != "serve":
            fail(where, f"{name}: command must start with serve")
        store = flag(args, "store") or ""
        if not store.startswith("postgres://"):
            fail(where, f"{name}: no --store postgres://... in its command")
        elif re.match(r"postgres://[^/@]*:[^/@]*@", store):
            fail(where, f"{name}: --store carries a password: pass it as PGPASSWORD")
        env = s.get("environment") or {}
        for k in ("EGRESSD_MASTER_KEY", "PGPASSWORD"):
            if not REQUIRED_REF.match(str(env.get(k, ""))):
                fail(where, f"{name}: {k} must be set from a required variable (${{VAR:?message}})")
        ports = {}
        for f in ("admin-listen", "proxy-listen", "metrics-listen"):
            ports[f] = port_of(flag(args, f))
            if ports[f] is None:
                fail(where, f"{name}: command sets no --{f} with a port")
        listens[name] = ports
        if flag(args, "data-dir") is None:
            fail(where, f"{name}: command sets no --data-dir")
        vols = [v for v in s.get("volumes") or [] if str(v).split(":")[1:2] == [flag(args, "data-dir")]]
        if len(vols) != 1:
            fail(where, f"{name}: no volume on its data dir {flag(args, 'data-dir')}")
        else:
            data_vols[name] = str(vols[0]).split(":")[0]
    if len(set(data_vols.values())) != len(data_vols):
        fail(where, f"replicas share a data dir volume: {data_vols} (each needs its own audit journal)")

    # Relative bind mounts exist.
    for name, s in svcs.items():
        for v in s.get("volumes") or []:
            src = str(v).split(":")[0]
            if src.startswith("."):
                if not os.path.exists(os.path.normpath(os.path.join(d, src))):
                    fail(where, f"{name}: mounts {src}, which does not exist")

    check_haproxy(os.path.join(d, "haproxy.cfg"), listens)
    check_prometheus_config(d, svcs.get("prometheus", {}), listens)
    if not errors:
        print(f"ok: compose: {len(replicas)} replicas on --store postgres://, secrets required from the environment, "
              "HAProxy and Prometheus match their listeners")


def svcs_build_dockerfile(replicas):
    for s in replicas.values():
        return os.path.join(s["build"]["context"], s["build"].get("dockerfile", "Dockerfile"))
    return "Dockerfile"


def check_haproxy(path, listens):
    where = rel(path)
    backends = {}
    cur = None
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] in ("global", "defaults", "frontend", "backend", "listen", "resolvers"):
            cur = words[1] if words[0] == "backend" else None
            if cur:
                backends[cur] = {"servers": {}, "lines": []}
            continue
        if cur:
            backends[cur]["lines"].append(line)
            if words[0] == "server":
                backends[cur]["servers"][words[1]] = words[2]
    want = {"proxy-listen": "egressd_proxy", "admin-listen": "egressd_admin"}
    for f, b in want.items():
        if b not in backends:
            fail(where, f"no backend {b}")
            continue
        be = backends[b]
        exp = {n: f"{n}:{p[f]}" for n, p in listens.items()}
        if be["servers"] != exp:
            fail(where, f"backend {b}: servers {be['servers']}, want {exp} (the replicas' --{f})")
        text = "\n".join(be["lines"])
        if not re.search(r"^http-check send .*\buri /readyz\b", text, re.M):
            fail(where, f"backend {b}: no http-check on /readyz")
        for n, p in listens.items():
            m = re.search(r"\bcheck\b.*\bport (\d+)", text)
            if not m or int(m.group(1)) != p["admin-listen"]:
                fail(where, f"backend {b}: health checks must ask the admin port {p['admin-listen']}")
                break


def check_prometheus_config(d, svc, listens):
    path = os.path.join(d, "prometheus.yml")
    where = rel(path)
    (p,) = load_yaml_docs(path)
    targets = set()
    for sc in p.get("scrape_configs", []):
        if sc.get("job_name") == "egressd":
            for st in sc.get("static_configs", []):
                targets |= set(st.get("targets", []))
    want = {f"{n}:{ls['metrics-listen']}" for n, ls in listens.items()}
    if targets != want:
        fail(where, f"job egressd scrapes {sorted(targets)}, want {sorted(want)} (the replicas' --metrics-listen)")
    rules = p.get("rule_files", [])
    if not any(os.path.normpath(os.path.join(d, r)) == os.path.join(DEPLOY, "prometheus", "alerts.yml") for r in rules):
        fail(where, "rule_files does not load deploy/prometheus/alerts.yml")
    # In the container: the rule path, resolved against --config.file's
    # directory, must be where compose mounts alerts.yml.
    cfg = next((a.split("=", 1)[1] for a in svc.get("command", []) if str(a).startswith("--config.file=")), None)
    mounts = {}
    for v in svc.get("volumes") or []:
        parts = str(v).split(":")
        if len(parts) >= 2:
            mounts[os.path.normpath(os.path.join(d, parts[0]))] = parts[1]
    if cfg is None or mounts.get(path) != cfg:
        fail(rel(os.path.join(d, "docker-compose.yml")), "prometheus: --config.file is not where prometheus.yml is mounted")
    else:
        for r in rules:
            in_container = os.path.normpath(os.path.join(os.path.dirname(cfg), r))
            if in_container not in mounts.values():
                fail(rel(os.path.join(d, "docker-compose.yml")), f"prometheus: rule file {r} resolves to {in_container}, where nothing is mounted")


# ---- kubernetes -------------------------------------------------------------

def subset(a, b):
    return all(b.get(k) == v for k, v in (a or {}).items())


def check_kubernetes():
    d = os.path.join(DEPLOY, "kubernetes")
    kpath = os.path.join(d, "kustomization.yaml")
    (kust,) = load_yaml_docs(kpath)
    docs = []
    files = sorted(f for f in os.listdir(d) if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
    for f in files:
        for doc in load_yaml_docs(os.path.join(d, f)):
            where = f"deploy/kubernetes/{f}"
            for k in ("apiVersion", "kind"):
                if not doc.get(k):
                    fail(where, f"a document without {k}")
            if not (doc.get("metadata") or {}).get("name"):
                fail(where, f"a {doc.get('kind')} without metadata.name")
            elif doc.get("apiVersion") and doc.get("kind"):
                docs.append((f, doc))
    res = kust.get("resources", [])
    for r in res:
        if not os.path.exists(os.path.join(d, r)):
            fail("deploy/kubernetes/kustomization.yaml", f"resource {r} does not exist")
    for f in files:
        if f == "secret.template.yaml":
            if f in res:
                fail("deploy/kubernetes/kustomization.yaml", "lists secret.template.yaml: its placeholders would be applied")
        elif f not in res:
            fail("deploy/kubernetes/kustomization.yaml", f"does not list {f}")

    def of_kind(kind, files_=None):
        return [doc for f, doc in docs if doc.get("kind") == kind and (files_ is None or f in files_)]

    deps = of_kind("Deployment")
    if len(deps) != 1:
        fail("deploy/kubernetes", f"want one Deployment, have {len(deps)}")
        return
    dep = deps[0]
    where = "deploy/kubernetes: Deployment " + dep["metadata"]["name"]
    spec = dep["spec"]
    if spec.get("replicas") != 3:
        fail(where, f"replicas {spec.get('replicas')}, want 3")
    pod = spec["template"]
    labels = pod["metadata"].get("labels", {})
    if not spec.get("selector", {}).get("matchLabels") or not subset(spec["selector"]["matchLabels"], labels):
        fail(where, "selector.matchLabels do not match the pod template's labels")
    podspec = pod["spec"]
    if not (podspec.get("securityContext") or {}).get("runAsNonRoot"):
        fail(where, "pod securityContext.runAsNonRoot is not true")
    containers = podspec.get("containers", [])
    c = next((c for c in containers if c.get("name") == "egressd"), None)
    if c is None:
        fail(where, "no container named egressd")
        return
    args = [str(a) for a in c.get("args") or []]
    if not args or args[0] != "serve":
        fail(where, "args must start with serve")
    admin = port_of(flag(args, "admin-listen"))
    if admin is None:
        fail(where, "args set no --admin-listen with a port")
    byname = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    for f, pname in (("admin-listen", "admin"), ("proxy-listen", "proxy"), ("metrics-listen", "metrics")):
        if byname.get(pname) != port_of(flag(args, f)):
            fail(where, f"container port {pname} is {byname.get(pname)}, --{f} says {port_of(flag(args, f))}")

    def probe_port(p):
        port = p.get("httpGet", {}).get("port")
        return byname.get(port) if isinstance(port, str) else port

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        p = c.get(probe)
        if p is None:
            if probe != "startupProbe":
                fail(where, f"no {probe}")
            continue
        if p.get("httpGet", {}).get("path") != path:
            fail(where, f"{probe} asks {p.get('httpGet', {}).get('path')}, want {path}")
        if probe_port(p) != admin:
            fail(where, f"{probe} asks port {p.get('httpGet', {}).get('port')} ({probe_port(p)}), "
                        f"not the admin port {admin} of --admin-listen")
    sc = c.get("securityContext") or {}
    if sc.get("readOnlyRootFilesystem") is not True:
        fail(where, "container securityContext.readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        fail(where, "container securityContext.allowPrivilegeEscalation is not false")
    r = c.get("resources") or {}
    if not r.get("requests") or not (r.get("limits") or {}).get("memory"):
        fail(where, "resources need requests and a memory limit")
    datadir = flag(args, "data-dir")
    vols = {v["name"]: v for v in podspec.get("volumes", [])}
    m = next((m for m in c.get("volumeMounts", []) if m.get("mountPath") == datadir), None)
    if m is None or "emptyDir" not in vols.get(m["name"], {}):
        fail(where, f"the data dir {datadir} is not mounted from an emptyDir")

    # Secrets: from the Secret template, never a literal.
    secrets = {s["metadata"]["name"]: s for s in of_kind("Secret", ["secret.template.yaml"])}
    if not secrets:
        fail("deploy/kubernetes/secret.template.yaml", "no Secret")
    for s in secrets.values():
        for k, v in {**(s.get("stringData") or {}), **(s.get("data") or {})}.items():
            if "REPLACE-ME" not in str(v):
                fail("deploy/kubernetes/secret.template.yaml", f"{k}: a template value must be a marked placeholder (REPLACE-ME...), never a real one")
    env = {e["name"]: e for e in c.get("env", [])}
    for name in ("EGRESSD_MASTER_KEY", "EGRESSD_STORE"):
        if "secretKeyRef" not in (env.get(name, {}).get("valueFrom") or {}):
            fail(where, f"{name} must come from a secretKeyRef")
    nrefs = 0
    for e in c.get("env", []):
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            nrefs += 1
            s = secrets.get(ref.get("name"))
            keys = set((s or {}).get("stringData") or {}) | set((s or {}).get("data") or {})
            if s is None:
                fail(where, f"{e['name']}: secretKeyRef names Secret {ref.get('name')}, not in secret.template.yaml")
            elif ref.get("key") not in keys:
                fail(where, f"{e['name']}: secretKeyRef key {ref.get('key')} is not in the Secret template ({sorted(keys)})")
        elif SECRET_ENV.search(e["name"]) and "value" in e:
            fail(where, f"{e['name']}: a literal value; take it from the Secret")
    cms = {cm["metadata"]["name"]: cm for cm in of_kind("ConfigMap")}
    for ef in c.get("envFrom", []):
        ref = ef.get("configMapRef")
        if ref and ref.get("name") not in cms:
            fail(where, f"envFrom names ConfigMap {ref.get('name')}, which no manifest defines")
    for name, cm in cms.items():
        for k in (cm.get("data") or {}):
            if not k.startswith("EGRESSD_"):
                fail(f"deploy/kubernetes: ConfigMap {name}", f"{k} is not an EGRESSD_* variable")
            if k in ("EGRESSD_MASTER_KEY", "EGRESSD_STORE") or SECRET_ENV.search(k[len("EGRESSD_"):]):
                fail(f"deploy/kubernetes: ConfigMap {name}", f"{k} is secret: it belongs in the Secret")

    # Services select the pods, reach their ports; admin stays inside.
    for svc in of_kind("Service"):
        sw = "deploy/kubernetes: Service " + svc["metadata"]["name"]
        if not svc["spec"].get("selector") or not subset(svc["spec"]["selector"], labels):
            fail(sw, "selector does not match the pods' labels")
        for p in svc["spec"].get("ports", []):
            t = p.get("targetPort", p.get("port"))
            tp = byname.get(t) if isinstance(t, str) else t
            if tp not in byname.values():
                fail(sw, f"targetPort {t} is no container port")
            if tp == admin and svc["spec"].get("type", "ClusterIP") != "ClusterIP":
                fail(sw, "exposes the admin port: it must stay ClusterIP")
    svc_ports = {byname.get(p.get("targetPort")) if isinstance(p.get("targetPort"), str) else p.get("targetPort")
                 for svc in of_kind("Service") for p in svc["spec"].get("ports", [])}
    for pname in ("proxy", "admin"):
        if byname.get(pname) not in svc_ports:
            fail("deploy/kubernetes", f"no Service for the {pname} port")

    pdbs = of_kind("PodDisruptionBudget")
    if len(pdbs) != 1:
        fail("deploy/kubernetes", f"want one PodDisruptionBudget, have {len(pdbs)}")
    for pdb in pdbs:
        pw = "deploy/kubernetes: PodDisruptionBudget " + pdb["metadata"]["name"]
        if pdb["spec"].get("minAvailable") != 2:
            fail(pw, f"minAvailable {pdb['spec'].get('minAvailable')}, want 2")
        if not subset(pdb["spec"].get("selector", {}).get("matchLabels"), labels) or not pdb["spec"].get("selector", {}).get("matchLabels"):
            fail(pw, "selector does not match the pods' labels")
    if not errors:
        print(f"ok: kubernetes: {len(docs)} documents with apiVersion, kind and name; Deployment of 3, probes on the "
              f"admin port {admin}, {nrefs} secretKeyRefs in the Secret template, Services and PDB select the pods")


# ---- metrics ----------------------------------------------------------------

def registered_metrics():
    names = set()
    for path in glob.glob(os.path.join(ROOT, "**", "*.go"), recursive=True):
        if "/deploy/" in path or "/node_modules/" in path:
            continue
        with open(path, errors="replace") as f:
            names |= set(re.findall(r'Name:\s*"(egressd_[a-z0-9_]*[a-z0-9])"', f.read()))
    return names


def metric_base(name, known):
    if name in known:
        return name
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and name[: -len(suf)] in known:
            return name[: -len(suf)]
    return name


METRIC_RE = re.compile(r"\b(egressd_[a-z0-9_]+)")


def check_metrics_of(where, expr, code):
    """Returns the planned metrics expr uses; fails on unknown ones."""
    planned = set()
    for m in METRIC_RE.findall(expr):
        b = metric_base(m, code | PLANNED)
        if b in code:
            continue
        if b in PLANNED:
            planned.add(b)
            continue
        fail(where, f"{m}: egressd registers no such metric")
    return planned


# ---- grafana ----------------------------------------------------------------

GRAFANA_VARS = [("$__rate_interval", "5m"), ("$__range", "1h"), ("$datasource", ""),
                ("$job", "egressd.*"), ("$instance", ".*")]


def check_dashboard(code, promql_out):
    path = os.path.join(DEPLOY, "grafana", "egressd-dashboard.json")
    where = rel(path)
    with open(path) as f:
        d = json.load(f)
    for k in ("title", "uid", "schemaVersion", "panels"):
        if k not in d:
            fail(where, f"no {k}")
    vars_ = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    if vars_.get("datasource", {}).get("type") != "datasource":
        fail(where, "no datasource variable (type datasource, query prometheus): importing must not pin a data source")
    ids = set()
    rules = []
    n = 0
    planned_panels = 0
    for p in d.get("panels", []):
        pw = f"{where}: panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            fail(pw, "duplicate id")
        ids.add(p.get("id"))
        g = p.get("gridPos") or {}
        if not all(k in g for k in ("x", "y", "w", "h")) or g["x"] + g["w"] > 24:
            fail(pw, f"bad gridPos {g}")
        if p.get("type") == "row":
            continue
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            fail(pw, "datasource must be ${datasource}")
        planned = set()
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if not expr.strip():
                fail(pw, f"target {t.get('refId')}: empty expr")
                continue
            n += 1
            planned |= check_metrics_of(pw, expr, code)
            e = expr
            for k, v in GRAFANA_VARS:
                e = e.replace(k, v)
            if "$" in e.replace("$labels", ""):
                fail(pw, f"target {t.get('refId')}: an unknown variable in {expr}")
            rules.append({"record": f"dashboard:panel{p.get('id')}:{t.get('refId')}", "expr": e})
        marked = PLANNED_MARK in (p.get("description") or "")
        if planned and not marked:
            fail(pw, f"uses {sorted(planned)}, which egressd does not register yet: its description must say {PLANNED_MARK!r}")
        if planned:
            planned_panels += 1
        if marked and not planned:
            notes.append(f"{pw}: says {PLANNED_MARK!r} but all its metrics are registered now: drop the note")
    if promql_out:
        with open(promql_out, "w") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    if not errors:
        print(f"ok: grafana: {len(ids)} panels, {n} queries; {planned_panels} panels on cluster-mode metrics "
              "not registered yet, marked so")


# ---- prometheus rules ---------------------------------------------------------

def slug(h):
    out = []
    for ch in h.lower():
        if ch == " ":
            out.append("-")
        elif ch in "-_" or ch.isalnum():
            out.append(ch)
    return "".join(out)


def check_alerts(code):
    path = os.path.join(DEPLOY, "prometheus", "alerts.yml")
    where = rel(path)
    (rules,) = load_yaml_docs(path)
    with open(os.path.join(ROOT, "docs", "deploy.md")) as f:
        doc = f.read()
    doc = re.sub(r"(?ms)^```.*?^```", "", doc)
    anchors = {slug(m) for m in re.findall(r"(?m)^#{1,6} +(.+?) *$", doc)}
    (tests,) = load_yaml_docs(os.path.join(DEPLOY, "prometheus", "alerts_test.yml"))
    fired = set()
    for t in tests.get("tests", []):
        for a in t.get("alert_rule_test", []):
            if a.get("exp_alerts"):
                fired.add(a["alertname"])
    names = []
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            if "alert" not in r:
                continue
            name = r["alert"]
            names.append(name)
            aw = f"{where}: {name}"
            if "for" not in r:
                fail(aw, "no for:")
            if (r.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                fail(aw, "severity must be critical, warning or info")
            ann = r.get("annotations") or {}
            for k in ("summary", "description", "runbook"):
                if not ann.get(k):
                    fail(aw, f"no {k} annotation")
            rb = ann.get("runbook", "")
            if not rb.startswith("docs/deploy.md#") or rb.split("#", 1)[1] not in anchors:
                fail(aw, f"runbook {rb!r} names no heading of docs/deploy.md")
            if name not in fired:
                fail(aw, "no test in alerts_test.yml fires it")
            check_metrics_of(aw, r.get("expr", ""), code)
    if len(set(names)) != len(names):
        fail(where, "an alert name is used twice")
    if not errors:
        print(f"ok: prometheus: {len(names)} alerts, each with for, severity, summary, description, a runbook "
              "heading in docs/deploy.md and a test that fires it; their metrics are egressd's")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--promql-rules", help="write the dashboard's queries as recording rules to this file")
    a = ap.parse_args()
    code = registered_metrics()
    if not code:
        fail("deploy/check.py", "found no egressd_* metric in the Go code: is the pattern stale?")
    for f in (check_parse, check_compose, check_kubernetes):
        f()
    check_dashboard(code, a.promql_rules)
    check_alerts(code)
    for n in notes:
        print("note:", n)
    if errors:
        for e in errors:
            print("FAIL:", e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
