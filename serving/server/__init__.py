"""serve-kit's internals: settings, served models, the batcher, the repository, the gRPC servicers
(KServe V2 and the typed task API), error → status mapping, feedback store, metrics and logs.

Never imported by the training kit; everything it knows of a model comes from `serving.bundle`.
"""
