# functional_grasp: two commands do all set-up on a fresh Debian machine.
#   make demo   full pipeline in simulation (scene -> perception -> planner -> sim execution)
#   make test   the test suite
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
OUT     ?= out/demo
OBJECT  ?= mug
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export FASTRTPS_DEFAULT_PROFILES_FILE := $(CURDIR)/config/fastdds_localhost.xml
export ROS_LOG_DIR := $(CURDIR)/out/ros_logs
export MUJOCO_GL ?= egl

.PHONY: venv demo test bench clean

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml scripts/setup_env.sh
	scripts/setup_env.sh $(VENV)
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fgrasp demo --object $(OBJECT) --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/fgrasp bench

clean:
	rm -rf out .pytest_cache
