//! Test code only: a protocol double of a KurrentDB node.
