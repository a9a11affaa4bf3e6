"""The peers the sustained benchmark runs beside sluicegate, each as a process of its own.

They import nothing of the project (the Quix Streams one runs in a virtualenv of its
own, whose confluent-kafka is older than the project's): what they need to know, the
model, the instructions and the output's JSON schema, comes in a spec file.
"""
