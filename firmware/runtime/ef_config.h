/* Build-wide settings of the native runtime. `edgeforge build --runtime native` writes this file into each
 * build's runtime/ copy with the mode it generated the model's parameters for, so that every compiler
 * invocation (host runner, Cortex-M image, bench firmware, the user's own project) agrees without flags.
 * A -DEF_SINGLE_ROUNDING=... on the command line still wins. */
#ifndef EF_CONFIG_H_
#define EF_CONFIG_H_

#ifndef EF_SINGLE_ROUNDING
#define EF_SINGLE_ROUNDING 0 /* 0: TFLite Micro's default double rounding; 1: TFLITE_SINGLE_ROUNDING */
#endif

#endif /* EF_CONFIG_H_ */
