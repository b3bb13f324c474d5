//! Keel's NFSv3 + MOUNT3 gateway and the file system it serves
#![forbid(unsafe_code)]
