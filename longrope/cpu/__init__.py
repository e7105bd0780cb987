"""The CPU under torch: oneMKL's kernel choice on AMD processors (`mkl`)."""
