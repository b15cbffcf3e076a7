"""AutoFAS: search which features and which small architecture a pre-ranking student uses, distilled from
the TaoSR1 relevance model under a latency budget (arXiv 2205.09394).

Journey: teacher cache (:mod:`.teacher`) -> feature fields (:mod:`.features`) -> supernet with field gates
and mixed operators (:mod:`.space`) + latency lookup table (:mod:`.latency`) -> search (:mod:`.search`)
-> discrete student, retrained and exported to ONNX (:mod:`.student`) -> report with plots (:mod:`.report`).
Only :mod:`.features` and :mod:`.teacher` are torch-free.
"""
