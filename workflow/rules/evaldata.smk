# Real evaluation inputs, fetched from pinned sources and checked against their checksums: prompt sets
# (COCO captions, DrawBench, PartiPrompts, T2I-CompBench) or ImageNet classes, FID reference statistics
# and torch-fidelity's Inception weights. Offline, each names its source and how to pre-fetch it.


rule eval_prompts:
    output:
        str(PATHS.prompt_set("{prompt_set}")),
    wildcard_constraints:
        prompt_set=one_of(EVAL_PROMPT_SETS),
    params:
        study=STUDY_FILE,
        values=node_params("eval-prompts@{prompt_set}"),
    resources:
        gpu=0,
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("prompts", "{prompt_set}.log"),
    shell:
        "diffscale --params {params.study:q} prompts --name {wildcards.prompt_set:q} 2> {log:q}"


for fetched in ("fid-reference", "inception"):
    if f"fetch-{fetched}" in NODES:

        rule:
            name:
                f"fetch_{fetched.replace('-', '_')}"
            output:
                NODES[f"fetch-{fetched}"].outs[0],
            params:
                study=STUDY_FILE,
                values=NODES[f"fetch-{fetched}"].param_values(PARAMS),
                input=fetched,
            resources:
                gpu=0,
            conda:
                "../envs/diffscale.yaml"
            log:
                log_file("evaldata", f"{fetched}.log"),
            shell:
                "diffscale --params {params.study:q} fetch {params.input} 2> {log:q}"
