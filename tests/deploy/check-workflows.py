#!/usr/bin/env python3
"""Checks the delivery pipeline in .github/workflows (issue 20 point 1, issue 16 point 5).

  - ci.yml tests, then builds the arm64 Lambda zips in the same job, after the tests, and
    uploads them as the artifact `lambda-arm64`;
  - deploy.yml runs only after a successful `ci` run on main (workflow_run), never builds,
    downloads that run's artifact, deploys it to `dev`, smoke-tests dev, and only then
    (needs) deploys the same artifact to `prod` behind the `production` environment and
    smoke-tests prod; one concurrency group per stage, never cancelled mid-deploy;
  - every action is pinned to a full commit SHA; the workflows grant no permission by
    default and every job states its own, with write access only where it is needed.

Run by tests/deploy/check.sh with the .venv's Python (PyYAML comes with cfn-lint; a
Python check rather than a Rust one so that Cargo.toml gains no YAML crate for one test).
`--self-test` also breaks the parsed workflows in memory, one rule at a time, and fails
unless each break is caught: the checks can fail.
"""

import copy
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
ARTIFACT = "lambda-arm64"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# The only write permission any job may have: an OIDC token to assume the deploy role.
ALLOWED_WRITE = {"id-token"}


class Finding(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Finding(message)


def load(name):
    with open(WORKFLOWS / name, encoding="utf-8") as f:
        wf = yaml.safe_load(f)
    # YAML 1.1 reads the key `on` as the boolean true.
    if True in wf:
        wf["on"] = wf.pop(True)
    return wf


def steps(job):
    return job.get("steps") or []


def runs(step):
    return step.get("run") or ""


def index_of(job_steps, pred, what, job_name):
    for i, step in enumerate(job_steps):
        if pred(step):
            return i
    raise Finding(f"job {job_name}: no step that {what}")


def check_pins_and_permissions(name, wf):
    check(wf.get("permissions") == {}, f"{name}: top-level permissions must be {{}} (none by default)")
    for job_name, job in wf["jobs"].items():
        perms = job.get("permissions")
        check(isinstance(perms, dict), f"{name}: job {job_name} states no permissions")
        for scope, level in perms.items():
            check(level in ("read", "write", "none"), f"{name}: {job_name}: {scope}: {level}")
            if level == "write":
                check(scope in ALLOWED_WRITE, f"{name}: job {job_name} may write {scope}")
        for step in steps(job):
            uses = step.get("uses")
            if uses:
                check(PINNED.match(uses), f"{name}: job {job_name}: {uses} is not pinned to a commit SHA")


def check_ci(wf):
    on = wf["on"]
    check("push" in on and on["push"].get("branches") == ["main"], "ci.yml: runs on pushes to main")
    builders = [
        (n, j) for n, j in wf["jobs"].items()
        if any("scripts/build-lambdas.sh" in runs(s) for s in steps(j))
    ]
    check(len(builders) == 1, f"ci.yml: exactly one job builds the Lambdas, not {len(builders)}")
    job_name, job = builders[0]
    s = steps(job)
    tests = index_of(s, lambda st: "bash .ci/run" in runs(st), "runs .ci/run", job_name)
    build = index_of(s, lambda st: "scripts/build-lambdas.sh" in runs(st), "builds", job_name)
    check("--arch arm64" in runs(s[build]), "ci.yml: the zips are built for arm64")
    upload = index_of(
        s,
        lambda st: (st.get("uses") or "").startswith("actions/upload-artifact@")
        and st.get("with", {}).get("name") == ARTIFACT,
        f"uploads {ARTIFACT}",
        job_name,
    )
    check(tests < build < upload, "ci.yml: test, then build, then upload, in that order, in one job")
    check("target/lambda" in s[upload]["with"]["path"], "ci.yml: the upload is the built zips")


def deploy_step(job):
    return [i for i, st in enumerate(steps(job)) if "scripts/deploy.sh" in runs(st)]


def check_deploy(wf, ci_name):
    on = wf["on"]
    check(set(on) == {"workflow_run"}, f"deploy.yml: triggers {sorted(on)}: only a finished CI run")
    wr = on.get("workflow_run") or {}
    check(wr.get("workflows") == [ci_name], f"deploy.yml: follows the workflow {ci_name!r}")
    check(wr.get("types") == ["completed"], "deploy.yml: on completed CI runs")
    check(wr.get("branches") == ["main"], "deploy.yml: of main only")
    jobs = wf["jobs"]

    # The gate: a job that every deploying job needs, which runs only for a successful CI run.
    gate_name = "artifact"
    check(gate_name in jobs, "deploy.yml: job 'artifact' resolves the CI run")
    gate_if = jobs[gate_name].get("if", "")
    check(
        "github.event.workflow_run.conclusion == 'success'" in gate_if,
        "deploy.yml: the artifact job runs only when CI succeeded",
    )

    for job_name, job in jobs.items():
        for st in steps(job):
            check(
                "build-lambdas.sh" not in runs(st) and "cargo " not in runs(st),
                f"deploy.yml: job {job_name} builds; it must deploy CI's artifact",
            )

    stages = {}
    for job_name, job in jobs.items():
        if not deploy_step(job):
            continue
        s = steps(job)
        (d,) = deploy_step(job)
        stage = job.get("env", {}).get("STAGE")
        check(stage in ("dev", "prod"), f"deploy.yml: job {job_name} deploys stage {stage!r}")
        check('--stage "$STAGE"' in runs(s[d]), f"deploy.yml: {job_name} deploys its own STAGE")
        check("--no-build" in runs(s[d]), f"deploy.yml: {job_name} deploys the downloaded zips (--no-build)")
        needs = job.get("needs")
        needs = [needs] if isinstance(needs, str) else (needs or [])
        check(gate_name in needs, f"deploy.yml: {job_name} needs the artifact job")
        dl = index_of(
            s,
            lambda st: (st.get("uses") or "").startswith("actions/download-artifact@"),
            "downloads the artifact",
            job_name,
        )
        w = s[dl].get("with", {})
        check(w.get("name") == ARTIFACT, f"deploy.yml: {job_name} downloads {ARTIFACT}")
        check(w.get("path") == "target/lambda", f"deploy.yml: {job_name} puts it where deploy.sh reads it")
        check(
            w.get("run-id") == "${{ needs.artifact.outputs.run-id }}",
            f"deploy.yml: {job_name} downloads the artifact of the CI run that succeeded",
        )
        check(dl < d, f"deploy.yml: {job_name} downloads before it deploys")
        checkout = index_of(s, lambda st: (st.get("uses") or "").startswith("actions/checkout@"), "checks out", job_name)
        check(
            s[checkout].get("with", {}).get("ref") == "${{ needs.artifact.outputs.sha }}",
            f"deploy.yml: {job_name} checks out the commit CI tested",
        )
        smoke = index_of(s, lambda st: "scripts/smoke-test.sh" in runs(st), "smoke-tests", job_name)
        check(smoke > d, f"deploy.yml: {job_name} smoke-tests after deploying")
        check('--stage "$STAGE"' in runs(s[smoke]), f"deploy.yml: {job_name} smoke-tests its own stage")
        conc = job.get("concurrency") or {}
        check(conc.get("group") == f"deploy-{stage}", f"deploy.yml: {job_name}: concurrency group deploy-{stage}")
        check(conc.get("cancel-in-progress") is False, f"deploy.yml: {job_name}: a deploy is never cancelled midway")
        check(stage not in stages, f"deploy.yml: two jobs deploy {stage}")
        stages[stage] = (job_name, job, needs, runs(s[smoke]))

    check(set(stages) == {"dev", "prod"}, f"deploy.yml: deploys dev and prod, found {sorted(stages)}")
    dev_name, dev, _, dev_smoke = stages["dev"]
    prod_name, prod, prod_needs, prod_smoke = stages["prod"]
    check(dev_name in prod_needs, "deploy.yml: prod needs dev (dev deployed and smoke-tested first)")
    check(prod.get("environment") == "production", "deploy.yml: prod runs in the environment 'production'")
    check("--mode full-load" in dev_smoke, "deploy.yml: dev's smoke test is a full load")
    check("--mode dry-run" in prod_smoke, "deploy.yml: prod's smoke test emails no one (dry run)")


def check_all(workflows):
    for name, wf in workflows.items():
        check_pins_and_permissions(name, wf)
    check_ci(workflows["ci.yml"])
    check_deploy(workflows["deploy.yml"], workflows["ci.yml"]["name"])


def self_test(workflows):
    """Each mutation breaks one rule; each must be caught."""

    def job(wf, stage):
        return next(j for j in wf["deploy.yml"]["jobs"].values() if j.get("env", {}).get("STAGE") == stage)

    def step_of(j, text):
        return next(s for s in j["steps"] if text in (s.get("run") or s.get("uses") or ""))

    mutations = {
        "prod without needs dev": lambda wf: job(wf, "prod").update(needs=["artifact"]),
        "deploy on push": lambda wf: wf["deploy.yml"]["on"].update(push={"branches": ["main"]}),
        "no success gate": lambda wf: wf["deploy.yml"]["jobs"]["artifact"].update(**{"if": "always()"}),
        "deploy rebuilds": lambda wf: job(wf, "dev")["steps"].insert(
            0, {"run": "bash scripts/build-lambdas.sh --arch arm64"}
        ),
        "artifact of another run": lambda wf: step_of(job(wf, "prod"), "download-artifact")["with"].pop("run-id"),
        "prod not gated": lambda wf: job(wf, "prod").pop("environment"),
        "shared concurrency": lambda wf: job(wf, "prod")["concurrency"].update(group="deploy-dev"),
        "tag pin": lambda wf: step_of(job(wf, "dev"), "actions/checkout@").update(uses="actions/checkout@v4"),
        "job without permissions": lambda wf: wf["ci.yml"]["jobs"]["build-and-test"].pop("permissions"),
        "contents write": lambda wf: job(wf, "dev")["permissions"].update(contents="write"),
        "build before tests": lambda wf: wf["ci.yml"]["jobs"]["build-and-test"]["steps"].reverse(),
        "prod smoke emails": lambda wf: step_of(job(wf, "prod"), "smoke-test.sh").update(
            run='bash scripts/smoke-test.sh --stage "$STAGE" --mode full-load'
        ),
    }
    missed = []
    for what, mutate in mutations.items():
        broken = copy.deepcopy(workflows)
        mutate(broken)
        try:
            check_all(broken)
            missed.append(what)
        except Finding:
            pass
    check(not missed, f"self-test: not caught: {missed}")
    return len(mutations)


def main():
    workflows = {p.name: load(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}
    try:
        check_all(workflows)
        caught = self_test(workflows) if "--self-test" in sys.argv else 0
    except Finding as e:
        print(f"check-workflows: {e}", file=sys.stderr)
        return 1
    print(f"check-workflows: ci and deploy pipelines as required ({caught} broken variants caught)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
