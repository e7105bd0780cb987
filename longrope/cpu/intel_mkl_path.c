/* oneMKL, linked into torch's CPU build, asks this function whether the CPU is Intel's before it picks GEMM kernels.
 * On AMD CPUs the answer sends fp32 GEMM to slower generic code. Preloaded into a process ahead of torch
 * (longrope.cpu.mkl), this definition answers yes; MKL still chooses among the instruction sets the CPU reports. */
int mkl_serv_intel_cpu_true(void) { return 1; }
