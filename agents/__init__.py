"""seqrec.agents"""
