"""Training of simulation-trained Keras models and the model artifact.

Built in issue #3; empty until then.
"""
