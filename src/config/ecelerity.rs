//! Reader for Momentum's ecelerity.conf syntax (to be written).
