# Aggregation and the report: the tidy metrics.csv, then figures, tables and the report page.


rule aggregate:
    input:
        node_inputs("aggregate"),
    output:
        report(PATHS.metrics, caption="../report/metrics.rst", category="Tables"),
    params:
        values=node_params("aggregate"),
    log:
        log_file("aggregate.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} aggregate 2> {log:q}"


rule render_report:
    input:
        node_inputs("report"),
    output:
        report(
            directory(PATHS.report_dir),
            htmlindex="index.html",
            caption="../report/report.rst",
            category="Report",
        ),
    params:
        values=node_params("report"),
    log:
        log_file("report.log"),
    shell:
        "diffscale --params {STUDY_FILE:q} report 2> {log:q}"
