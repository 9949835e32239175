# CUDNN::CUDNN -- set CUDNN_ROOT when cuDNN is not beside the CUDA toolkit.
include(${CMAKE_CURRENT_LIST_DIR}/FindLibraryWithHeader.cmake)
baleine_find_library_with_header(CUDNN cudnn.h cudnn libcudnn.so.9)
