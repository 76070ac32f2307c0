"""seqrec.encoders"""
