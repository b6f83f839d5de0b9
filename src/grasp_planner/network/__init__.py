"""The multimodal D(R,O) grasp network (CorDex-style) and grasp recovery from its distance matrices.

Modules: ``config`` (sizes and ablation switches), ``encoders`` / ``sampling`` / ``fusion`` /
``decoder`` / ``model`` (the network), ``losses``, ``recovery`` (multilateration → per-link Kabsch
→ joint solve → ranking), ``checkpoint`` (safetensors), ``bench`` (timings). Pure torch: no rclpy.
"""
