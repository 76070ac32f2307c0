"""seqrec.envs"""
