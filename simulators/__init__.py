"""seqrec.simulators"""
