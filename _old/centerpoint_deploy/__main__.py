from centerpoint_deploy.cli.app import main

main()
