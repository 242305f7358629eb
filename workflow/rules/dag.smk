# The rules are generated from the DAG's nodes (`diffscale.dag`), the same nodes DVC runs as stages: one rule
# per kind of node (every sampling block is a `sample` job, every scored block a `score` job, ...).
# Each job reads its plan (the parameter values it reads, its cells and code version, written by
# common.smk under a name that is its hash): a job runs `diffscale --plan <plan> <verb>`.

# Outputs that `snakemake --report` shows.
REPORTED = {
    ("aggregate", "metrics"): dict(caption="../report/metrics.rst", category="Tables"),
    ("report", "report"): dict(htmlindex="index.html", caption="../report/report.rst", category="Report"),
}


for rule_name, members in RULES.items():
    first = next(iter(members.values()))
    outputs = {}
    for role, path in first.outs.items():
        out = directory(pattern(first, path)) if role in first.directories else pattern(first, path)
        outputs[role] = report(out, **REPORTED[rule_name, role]) if (rule_name, role) in REPORTED else out

    rule:
        name:
            rule_name
        input:
            unpack(node_inputs(rule_name)),
        output:
            **outputs,
        params:
            verb=node_verb(rule_name),
        wildcard_constraints:
            # Its own members only: rules may share an output pattern (a toy model is trained, a hub model fetched).
            key="|".join(re.escape(key) for key in members) or "[^/]+",
        threads: first.threads
        priority: first.priority
        resources:
            mem_mb=first.mem_mb,
            runtime=(lambda wildcards: sample_minutes().get(wildcards.key, 60)) if first.gpu and rule_name == "sample" else 60,
            **gpu_resources(first.gpu),
        localrule: first.local
        log:
            log_file(rule_name, "{key}" if first.key else ""),
        benchmark:
            str(PATHS.root / "benchmarks" / rule_name / (("{key}" if first.key else rule_name) + ".tsv"))
        conda:
            "../envs/diffscale.yaml"
        shell:
            "diffscale --plan {input.plan:q} {params.verb} 2> {log:q}"


# A stale node's remake marker (see common.smk): once written, a new input that reruns the node's job.
rule remake:
    output:
        str(PATHS.root / "plans" / "snakemake" / "{family}" / "{member}" / "remake-{n}"),
    params:
        why=lambda wildcards, output: REMAKE_WHY.get(output[0], "stale"),
    wildcard_constraints:
        n=r"\d+",
    localrule: True
    log:
        str(PATHS.root / "logs" / "remake" / "{family}" / "{member}-{n}.log"),
    conda:
        "../envs/diffscale.yaml"
    shell:
        "echo {params.why:q} > {output:q} 2> {log:q}"
