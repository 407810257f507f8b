# Compiles a TensorFlow Lite Micro static library from a TFLM source tree. Driven by edgeforge
# (edgeforge/bench/tflm_lib.py), which chooses the sources (the framework core plus the kernels one model's
# op resolver registers) and the cache folders; usable by hand with the same variables:
#
#   make -f tflm.mk -j2 R=<tflm tree> CORE_DIR=<obj dir> KERN_DIR=<obj dir> LIB=<archive> \
#        CXX=arm-none-eabi-g++ CC=arm-none-eabi-gcc AR=arm-none-eabi-ar CXXFLAGS=... CFLAGS=... \
#        CORE_INC=... KERN_INC=... SRCS_CORE="<.cc paths relative to R>" SRCS_KERN=... SRCS_C=...
#
# TFLM's release build compiles tensorflow/lite/micro/kernels/** and CMSIS-NN at -O2, everything else at -Os
# (the shared tree's README, "Compiler invocations"). Objects are written under a temporary name and renamed,
# so that two builds sharing the cache never see half-written files.

.DELETE_ON_ERROR:
.SUFFIXES:

CORE_OBJS := $(patsubst %.cc,$(CORE_DIR)/%.o,$(SRCS_CORE))
KERN_OBJS := $(patsubst %.cc,$(KERN_DIR)/%.o,$(SRCS_KERN)) $(patsubst %.c,$(KERN_DIR)/%.o,$(SRCS_C))

$(LIB): $(CORE_OBJS) $(KERN_OBJS)
	@rm -f $@.tmp$$$$ && $(AR) rcs $@.tmp$$$$ $^ && mv $@.tmp$$$$ $@

$(CORE_DIR)/%.o: $(R)/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(CORE_INC) -Os -c $< -o $@.tmp$$$$ && mv $@.tmp$$$$ $@

$(KERN_DIR)/%.o: $(R)/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(KERN_INC) -O2 -c $< -o $@.tmp$$$$ && mv $@.tmp$$$$ $@

$(KERN_DIR)/%.o: $(R)/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(KERN_INC) -O2 -c $< -o $@.tmp$$$$ && mv $@.tmp$$$$ $@
