"""The results folder's file contract, readable without torch.

Every path the workflow and the package write under ``results/`` (:mod:`.layout`), the metrics row of
``metrics.jsonl`` and ``predictions.npz`` (:mod:`.metrics`), ``summary.json`` (:mod:`.summary`),
``throughput.json`` (:mod:`.throughput`) and the state checkpoint (:mod:`.checkpoint`) are defined
here and nowhere else: the rules (``rules/common.smk``), the trainer, the exporter and the reports
import them. Importing this package never imports torch (the checkpoint reader imports it when called).
"""
