# The toy world: dataset, FID reference, prompt sets and the trained components (autoencoder, text
# encoder, oracle classifier, the independent judge behind compositional accuracy, tiny CLIP). Each rule calls `diffscale toy <artifact>`.


rule toy_dataset:
    output:
        PATHS.dataset,
    params:
        study=STUDY_FILE,
        values=node_params("toy-dataset"),
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("toy", "dataset.log"),
    shell:
        "diffscale --params {params.study:q} toy dataset 2> {log:q}"


rule toy_reference:
    output:
        PATHS.reference,
    params:
        study=STUDY_FILE,
        values=node_params("toy-reference"),
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("toy", "reference.log"),
    shell:
        "diffscale --params {params.study:q} toy reference 2> {log:q}"


rule toy_prompts:
    output:
        str(PATHS.prompt_set("{prompt_set}")),
    wildcard_constraints:
        prompt_set=one_of(TOY_PROMPT_SETS),
    params:
        study=STUDY_FILE,
        values=node_params("prompts@{prompt_set}"),
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("toy", "prompts-{prompt_set}.log"),
    shell:
        "diffscale --params {params.study:q} toy prompts --name {wildcards.prompt_set:q} 2> {log:q}"


rule toy_autoencoder:
    input:
        node_inputs("toy-autoencoder"),
    output:
        directory(PATHS.component("autoencoder")),
    params:
        study=STUDY_FILE,
        values=node_params("toy-autoencoder"),
    threads: PARAMS["threads"]
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("toy", "autoencoder.log"),
    shell:
        "diffscale --params {params.study:q} toy autoencoder 2> {log:q}"


rule toy_text_encoder:
    input:
        node_inputs("toy-text-encoder"),
    output:
        directory(PATHS.component("text_encoder")),
    params:
        study=STUDY_FILE,
        values=node_params("toy-text-encoder"),
    threads: PARAMS["threads"]
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("toy", "text-encoder.log"),
    shell:
        "diffscale --params {params.study:q} toy text-encoder 2> {log:q}"


rule toy_oracle:
    input:
        node_inputs("toy-oracle"),
    output:
        directory(PATHS.component("oracle")),
    params:
        study=STUDY_FILE,
        values=node_params("toy-oracle"),
    threads: PARAMS["threads"]
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("toy", "oracle.log"),
    shell:
        "diffscale --params {params.study:q} toy oracle 2> {log:q}"


rule toy_judge:
    input:
        node_inputs("toy-judge"),
    output:
        directory(PATHS.component("judge")),
    params:
        study=STUDY_FILE,
        values=node_params("toy-judge"),
    threads: PARAMS["threads"]
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("toy", "judge.log"),
    shell:
        "diffscale --params {params.study:q} toy judge 2> {log:q}"


rule toy_clip:
    input:
        node_inputs("toy-clip"),
    output:
        directory(PATHS.component("clip")),
    params:
        study=STUDY_FILE,
        values=node_params("toy-clip"),
    threads: PARAMS["threads"]
    conda:
        "../envs/diffscale.yaml"
    log:
        log_file("toy", "clip.log"),
    shell:
        "diffscale --params {params.study:q} toy clip 2> {log:q}"
