# Scoring: every metric of every cell of a block, each with a bootstrap confidence interval.


rule score:
    input:
        node_inputs("score@{block}"),
    output:
        directory(str(PATHS.block_scores("{block}"))),
    params:
        study=STUDY_FILE,
        values=node_params("score@{block}"),
    threads: PARAMS["threads"]
    resources:
        gpu=GPUS,
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("score", "{block}.log"),
    benchmark:
        str(PATHS.root / "benchmarks" / "score" / "{block}.tsv")
    shell:
        "diffscale --params {params.study:q} score --block {wildcards.block:q} 2> {log:q}"
