//! `for_each_backend!`: stamps every test of a suite once per backend, in one place, so a new
//! backend is one line here. Both the behaviour and the adversarial suite include this file
//! (`#[macro_use] #[path = "../common/stamp.rs"] mod stamp;`); each test is written once, as
//! `async fn(&TestBackend) -> anyhow::Result<()>` in `crate::<topic>`, and the crate has the
//! shared `support` module at its root.

macro_rules! for_each_backend {
    ($($topic:ident: $($test:ident),* $(,)?;)*) => {
        for_each_backend!(@backend wasi; $($topic: $($test),*;)*);
        for_each_backend!(@backend wasi_slim; $($topic: $($test),*;)*);
        for_each_backend!(@backend podman; $($topic: $($test),*;)*);
        for_each_backend!(@backend docker; $($topic: $($test),*;)*);
        for_each_backend!(@backend podman_gvisor; $($topic: $($test),*;)*);
        for_each_backend!(@backend oci; $($topic: $($test),*;)*);
        for_each_backend!(@backend oci_rootless; $($topic: $($test),*;)*);
        for_each_backend!(@backend oci_rootless_bare; $($topic: $($test),*;)*);
    };
    (@backend $backend:ident; $($topic:ident: $($test:ident),*;)*) => {
        mod $backend {
            $(mod $topic {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $test() -> anyhow::Result<()> {
                        let backend = crate::support::TestBackend { name: stringify!($backend) };
                        if !backend.available()? {
                            return Ok(());
                        }
                        crate::$topic::$test(&backend).await
                    }
                )*
            })*
        }
    };
}
