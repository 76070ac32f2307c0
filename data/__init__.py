"""seqrec.data"""
