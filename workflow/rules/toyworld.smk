# The toy world: dataset, FID reference, prompt sets and the trained components (autoencoder, text
# encoder, oracle classifier, tiny CLIP). Each rule calls `diffscale toy <artifact>`.


rule toy_dataset:
    output:
        PATHS.dataset,
    params:
        values=node_params("toy-dataset"),
    log:
        log_file("toy", "dataset.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} toy dataset 2> {log:q}"


rule toy_reference:
    output:
        PATHS.reference,
    params:
        values=node_params("toy-reference"),
    log:
        log_file("toy", "reference.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} toy reference 2> {log:q}"


rule toy_prompts:
    output:
        str(PATHS.prompt_set("{prompt_set}")),
    params:
        values=node_params("prompts@{prompt_set}"),
    log:
        log_file("toy", "prompts-{prompt_set}.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} toy prompts --name {wildcards.prompt_set:q} 2> {log:q}"


rule toy_autoencoder:
    input:
        node_inputs("toy-autoencoder"),
    output:
        directory(PATHS.component("autoencoder")),
    params:
        values=node_params("toy-autoencoder"),
    threads: PARAMS["threads"]
    log:
        log_file("toy", "autoencoder.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} toy autoencoder 2> {log:q}"


rule toy_text_encoder:
    input:
        node_inputs("toy-text-encoder"),
    output:
        directory(PATHS.component("text_encoder")),
    params:
        values=node_params("toy-text-encoder"),
    threads: PARAMS["threads"]
    log:
        log_file("toy", "text-encoder.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} toy text-encoder 2> {log:q}"


rule toy_oracle:
    input:
        node_inputs("toy-oracle"),
    output:
        directory(PATHS.component("oracle")),
    params:
        values=node_params("toy-oracle"),
    threads: PARAMS["threads"]
    log:
        log_file("toy", "oracle.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} toy oracle 2> {log:q}"


rule toy_clip:
    input:
        node_inputs("toy-clip"),
    output:
        directory(PATHS.component("clip")),
    params:
        values=node_params("toy-clip"),
    threads: PARAMS["threads"]
    log:
        log_file("toy", "clip.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} toy clip 2> {log:q}"
