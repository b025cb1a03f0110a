"""(to be written: see mtrl/surgery/aggregators/base.py for the interface)"""
