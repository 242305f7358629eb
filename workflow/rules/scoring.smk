# Scoring: every metric of one cell, each with a bootstrap confidence interval.


rule score:
    input:
        node_inputs("score@{cell}"),
    output:
        str(PATHS.scores("{cell}")),
    params:
        values=node_params("score@{cell}"),
    threads: PARAMS["threads"]
    resources:
        gpu=GPUS,
        mem_mb=4000,
        runtime=30,
    log:
        log_file("score", "{cell}.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} score --cell {wildcards.cell:q} 2> {log:q}"
