"""The data contract and the engines that apply it: the columns (`schema`), the one validation engine
(`casting`), the Great Expectations suite (`validation`), raw snapshots, loading, synthetic customers.
"""
