# NCCL::NCCL -- set NCCL_ROOT when NCCL is not beside the CUDA toolkit.
include(${CMAKE_CURRENT_LIST_DIR}/FindLibraryWithHeader.cmake)
baleine_find_library_with_header(NCCL nccl.h nccl libnccl.so.2)
