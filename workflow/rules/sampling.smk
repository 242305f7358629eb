# Sampling: one job per cell writes its images, per-image records and cost ledger (atomically).


rule sample:
    input:
        node_inputs("sample@{cell}"),
    output:
        directory(str(PATHS.samples("{cell}"))),
    params:
        values=node_params("sample@{cell}"),
    threads: PARAMS["threads"]
    resources:
        gpu=GPUS,
        mem_mb=4000,
        runtime=60,
    log:
        log_file("sample", "{cell}.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} sample --cell {wildcards.cell:q} 2> {log:q}"
